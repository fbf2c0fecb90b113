"""bench_csv_defaults scores what a user of ``mbo-run task=csv`` gets: designs from a CSV the oracle
labeled, scored by that oracle, one arm per reward model."""

import json

from experiments.bench_csv_defaults import MODELS, main

# A warmup past the last step is refused; at this lr each step keeps the rate the default warmup (100
# steps to 2e-3) gave it.
TINY = ["diffusion.pretrain.steps=20", "diffusion.pretrain.warmup=20", "diffusion.pretrain.lr=4e-4",
        "finetune.iterations=2", "reward_model.epochs=1", "reward_model.min_steps=0",
        "reward_model.num_members=2", "n_designs=8", "oversample=2", "conservative.c=0", "finetune.alpha=0.1"]


def test_each_reward_model_runs_on_the_same_labeled_csv(tmp_path):
    out = tmp_path / "csv_defaults"
    main(["--problems", "L14_RNA1", "--seeds", "0", "--rows", "60", "--cache-dir", str(tmp_path / "cache"),
          "--work", str(tmp_path / "work"), "--out", str(out), *(f"--override={o}" for o in TINY)])
    run = json.loads((out / "runs" / "L14_RNA1__seed0.json").read_text())
    assert set(run["arms"]) == set(MODELS)
    for arm in run["arms"].values():
        assert arm["n"] == 8 and arm["feasible"] == 1.0 and arm["true_p50"] <= arm["true_p100"]
        assert arm["best_label"] == run["arms"]["ensemble"]["best_label"]
    rows = (tmp_path / "work" / "L14_RNA1__seed0" / "offline.csv").read_text().splitlines()
    assert rows[0] == "sequence,label" and len(rows) == 61
    assert "| conv_ensemble |" in out.with_suffix(".md").read_text()
