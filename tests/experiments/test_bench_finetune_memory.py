"""experiments/bench_finetune_memory.py on tiny lengths."""

import json

import pytest

from experiments.bench_finetune_memory import main, measure


@pytest.mark.parametrize("case", ["ppo", "rwr", "vidd", "backprop", "sample"])
def test_measure_reports_each_case(case):
    row = measure(case, 6, 4, vocab=20)
    assert (row["finetune"], row["length"], row["vocab"]) == (case, 6, 20)
    assert row["peak_gib"] > 0 and row["finetune_gib"] >= 0 and row["seconds"] > 0


def test_main_runs_each_case_in_its_own_process(tmp_path):
    main(["--out", str(tmp_path / "mem"), "--batch-size", "4", "--cases", "ppo:6", "sample:6:20"])
    rows = json.loads((tmp_path / "mem.json").read_text())
    assert [(r["finetune"], r["vocab"]) for r in rows] == [("ppo", 4), ("sample", 20)]
    assert "| sample | 6 | 20 |" in (tmp_path / "mem.md").read_text()
