"""bench_seiko hands the campaign's settings to run_seiko: the pool method above all, which it once
composed and then dropped, so `--override method@seiko.pool=…` silently ran the plain pool."""

import json
from types import SimpleNamespace

import pytest
import torch

import mbo.active
from experiments import bench_seiko
from mbo.data.alphabet import DNA
from mbo.data.dataset import SequenceDataset

ARGS = SimpleNamespace(rounds=1, batch=2, progress=False)


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(mbo.active, "run_seiko", lambda *a, **kw: seen.append((a, kw)) or [])
    return seen


def run(overrides, calls, method="seiko_ucb"):
    cfg, _ = bench_seiko.load_config(["length=8"], overrides, method)
    initial = SequenceDataset(torch.zeros(2, 8, dtype=torch.long), DNA, torch.tensor([0.0, 1.0]))
    bench_seiko.run_method(method, 0, cfg, SimpleNamespace(oracle=None), None, initial, ARGS)
    (_, kwargs), = calls
    return cfg, kwargs


def test_pool_method_reaches_run_seiko_with_its_overrides(calls):
    cfg, kw = run(["method@seiko.pool=gradient", "seiko.pool.scale=2", "seiko.c=3"], calls)
    pool = kw["pool_method"]
    assert pool.func.__name__ == "gradient_guidance" and pool.keywords["scale"] == 2
    assert kw["c"] == 3 and kw["alpha"] == cfg.finetune.alpha


def test_gradient_pool_by_default_and_removable(calls):
    _, kw = run([], calls)
    assert kw["pool_method"].func.__name__ == "gradient_guidance"
    calls.clear()
    _, kw = run(["~method@seiko.pool"], calls)
    assert kw["pool_method"] is None


def test_variant_overrides_apply(calls):
    _, kw = run([], calls, method="greedy")
    assert kw["c"] == 0.0


def write_run(out, method, seed, **extra):
    rec = {"method": method, "seed": seed, "initial_best": 0.25, "best_curve": [0.5, 1.0],
           "round_sizes": [2, 2], "feasible_fraction": 1.0, "solved_round": 2, "seconds": 1.0,
           "command": "python experiments/bench_seiko.py", **extra}
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "runs" / f"{method}_seed{seed}.json").write_text(json.dumps(rec))


def test_report_states_the_setting_the_runs_recorded_not_todays(tmp_path):
    out = tmp_path / "bench"
    for seed in (0, 1):
        write_run(out, "seiko_ucb", seed, setting="pool steered by gradient_guidance (scale = 4)")
    bench_seiko.report(out, "cmd", {"task": "t", "setting": "pool steered by gradient_guidance (scale = 1)"})
    text = out.with_suffix(".md").read_text()
    assert "(scale = 4)" in text and "(scale = 1)" not in text


def test_report_says_when_runs_disagree_or_did_not_record(tmp_path):
    out = tmp_path / "bench"
    write_run(out, "seiko_ucb", 0, setting="A")
    write_run(out, "seiko_ucb", 1)
    bench_seiko.report(out, "cmd", {"task": "t", "setting": "today"})
    assert "the runs differ: A (seiko_ucb seed 0); not recorded (seiko_ucb seed 1)" in (
        out.with_suffix(".md").read_text())
    (out / "runs" / "seiko_ucb_seed0.json").unlink()
    bench_seiko.report(out, "cmd", {"task": "t", "setting": "today"})
    assert "today (rebuilt from the settings at report time" in out.with_suffix(".md").read_text()


def test_report_names_the_task_the_runs_ran_on(tmp_path):
    out = tmp_path / "bench"
    write_run(out, "seiko_ucb", 0, setting="A", task="ehrlich_l64")
    write_run(out, "ga", 0)  # made before runs recorded their task
    # A report-only call builds its task from --task-arg, the default (L = 32) when none is given.
    bench_seiko.report(out, "cmd", {"task": "ehrlich_l32", "setting": "today"})
    assert "Task: `ehrlich_l64`" in out.with_suffix(".md").read_text()


def test_a_homolog_library_is_feasible_distinct_variants_of_one_offline_design():
    from mbo.active.seiko import spread
    from mbo.diffusion import MaskedDiffusion, TransformerDenoiser
    from mbo.tasks import Ehrlich

    task = Ehrlich(num_states=8, length=8, num_motifs=1, motif_length=2, quantization=2, corpus_size=50,
                   offline_size=40)
    torch.manual_seed(0)
    prior = MaskedDiffusion(TransformerDenoiser(8, 8, dim=16, depth=1, heads=2), 8, 8).eval()
    start = bench_seiko.initial_designs(task, 20, 0, homologs=0.3, pretrained=prior)
    parent = task.offline_dataset().tokens[torch.randperm(40, generator=torch.Generator().manual_seed(0))[0]]
    assert torch.equal(start.tokens[0], parent) and 1 < len(start) <= 20
    assert len(start.tokens.unique(dim=0)) == len(start) and bool(torch.isfinite(start.labels).all())
    assert spread(start.tokens, 8) < spread(bench_seiko.initial_designs(task, 20, 0).tokens, 8)
    assert torch.equal(task.oracle(start.tokens), start.labels)
