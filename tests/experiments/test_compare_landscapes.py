"""``compare_landscapes.py`` on a sweep and exhaustive-search runs laid out as the tools write them."""

import json

import yaml

from experiments.compare_landscapes import main

TABLE = "/data/VAX2_REF_R2_8mers.txt"


def make_sweep(root, p50s):
    """``mbo-run -m task.landscape=SIX6_REF_R1,TABLE seed=0,1`` with the given p50 per (landscape, seed)."""
    root.mkdir()
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
        "overrides": {"task": [f"task.landscape=SIX6_REF_R1,{TABLE}", "seed=0,1"]}}}))
    for num, ((landscape, seed), p50) in enumerate(p50s.items()):
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"task.landscape={landscape}",
                                                                        f"seed={seed}"]))
        methods = {"pretrained": {"true_p50": 0.4, "true_p100": 0.8},
                   "finetuned": {"true_p50": p50, "true_p100": 0.99}}
        metrics = {"seed": seed, "best_offline": 0.44, "methods": methods}
        (job / "metrics.json").write_text(json.dumps(metrics))
    return root


def make_plain(root, landscape, p50s):
    (root / "runs").mkdir(parents=True)
    for seed, p50 in enumerate(p50s):
        command = (f"python experiments/bench_guidance.py --methods exhaustive --seeds 0 1 --override "
                   f"task.landscape={landscape} --override reward_model=ensemble --out {root}")
        (root / "runs" / f"tfbind8_mean__exhaustive__seed{seed}.json").write_text(json.dumps(
            {"seed": seed, "true_p50": p50, "true_p100": 0.98, "command": command}))
    return root


def test_defaults_against_the_plain_ensemble_per_landscape(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", {("SIX6_REF_R1", 0): 0.90, ("SIX6_REF_R1", 1): 0.92,
                                            (TABLE, 0): 0.70, (TABLE, 1): 0.72})
    six6 = make_plain(tmp_path / "plain_six6", "SIX6_REF_R1", [0.88, 0.90])
    vax2 = make_plain(tmp_path / "plain_vax2", TABLE, [0.74, 0.72])
    out = tmp_path / "compared"
    main(["--sweeps", str(sweep), "--plain", str(six6), str(vax2), "--out", str(out)])
    text = out.with_suffix(".md").read_text()
    assert "| SIX6_REF_R1 (0.440) | 2 / 2 | 0.910 ± 0.010 | 0.990 | 0.890 ± 0.010 | 0.980 | +0.020 ± 0.000 " \
           "(2 seeds) | yes |" in text
    assert "| VAX2_REF_R2 (0.440) | 2 / 2 | 0.710 ± 0.010 | 0.990 | 0.730 ± 0.010 | 0.980 | -0.020 ± 0.020 " \
           "(2 seeds) | no |" in text
    assert "on 1 of 2 landscapes" in text
    rows = json.loads(out.with_suffix(".json").read_text())
    assert len(rows) == 8 and {r["column"] for r in rows} == {"defaults", "plain_ensemble"}
