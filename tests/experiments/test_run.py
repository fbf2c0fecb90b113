"""The whole mbo-run pipeline on tiny configs: seconds, not minutes."""

import csv
import json

import pytest
from hydra import compose, initialize_config_module

from experiments.run import run
from mbo.data.io import DataError

TINY = [
    "diffusion.denoiser.dim=16", "diffusion.denoiser.depth=1", "diffusion.denoiser.heads=2",
    "diffusion.pretrain.steps=10", "diffusion.pretrain.batch_size=32", "diffusion.sampling_steps=4",
    "reward_model.num_members=2", "reward_model.epochs=1", "reward_model.hidden_dims=[8]",
    "finetune.iterations=2", "finetune.batch_size=8", "n_designs=16", "progress=false",
]


def read_rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def config(tmp_path, *overrides):
    with initialize_config_module("experiments.conf", version_base="1.3"):
        return compose("config", overrides=[*TINY, f"cache_dir={tmp_path / 'cache'}", *overrides])


def test_tfbind8_pipeline_writes_all_outputs(tmp_path):
    out = tmp_path / "run"
    result = run(config(tmp_path), out)
    for name in ["designs.csv", "metrics.json", "history.json", "report.md", "rewards.png",
                 "pred_vs_true.png", "history.png"]:
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == result
    tuned = result["methods"]["finetuned"]
    assert 0 <= tuned["true_p50"] <= tuned["true_p100"] <= 1 and tuned["n"] == 16
    rows = read_rows(out / "designs.csv")
    assert len(rows) == 16 and {"sequence", "pred_mean", "pred_std", "conservative",
                                "true_score"} <= rows[0].keys()
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


def test_second_run_reuses_cached_pretrained_model(tmp_path):
    run(config(tmp_path), tmp_path / "a")
    second = run(config(tmp_path, "seed=1"), tmp_path / "b")
    assert second["timings"]["pretrain_s"] < 2.0
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


def test_csv_task_has_no_true_scores(tmp_path):
    data = tmp_path / "mine.csv"
    lines = ["seq,kd"] + [f"{a}{b}{c}{d}CG,{i * 0.1:.1f}" for i, (a, b, c, d) in enumerate(
        (a, b, c, d) for a in "ACGT" for b in "ACGT" for c in "ACGT" for d in "AC")]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    result = run(config(tmp_path, "task=csv", f"task.path={data}", "task.sequence_column=seq",
                       "task.label_column=kd"), out)
    assert "true_p100" not in result["methods"]["finetuned"]
    rows = read_rows(out / "designs.csv")
    assert len(rows[0]["sequence"]) == 6 and "true_score" not in rows[0]
    assert (out / "report.md").is_file() and not (out / "pred_vs_true.png").exists()


@pytest.mark.parametrize("text, problem", [
    ("seq,kd\nACGT,1\nACGU,2\n", "row 3"),
    ("seq,kd\nACGT,1\nACGT\n", "row 3"),
    ("seq,kd\nACGT,1\nACG,nan\n", "row 3"),
    ("sequence,kd\nACGT,1\n", "seq"),
])
def test_bad_csv_is_refused_before_any_training(tmp_path, text, problem):
    data = tmp_path / "bad.csv"
    data.write_text(text)
    cfg = config(tmp_path, "task=csv", f"task.path={data}", "task.sequence_column=seq",
                 "task.label_column=kd")
    with pytest.raises(DataError, match=problem) as err:
        run(cfg, tmp_path / "run")
    assert "bad.csv" in str(err.value)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_stale_cache_entry_is_rebuilt(tmp_path):
    run(config(tmp_path), tmp_path / "a")
    (entry,) = (tmp_path / "cache").glob("*.safetensors")
    entry.write_bytes(b"not a checkpoint")
    run(config(tmp_path, "seed=1"), tmp_path / "b")
    (rebuilt,) = (tmp_path / "cache").glob("*.safetensors")
    assert rebuilt.stat().st_size > 100
