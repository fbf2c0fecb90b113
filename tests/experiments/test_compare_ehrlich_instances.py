"""``compare_ehrlich_instances.py`` on sweeps laid out as ``mbo-run -m`` writes them."""

import json

import pytest
import yaml

from experiments.compare_ehrlich_instances import main


def make_sweep(root, task, p50s, finished=True):
    """``mbo-run -m task=ehrlich … seed=0,1`` with the designs' p50 per seed (-inf: mostly infeasible)."""
    root.mkdir()
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
        "overrides": {"task": ["task=ehrlich", "seed=0,1"]}}}))
    for seed, p50 in enumerate(p50s):
        job = root / str(seed)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": seed}}}))
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["task=ehrlich", f"seed={seed}"]))
        if finished:
            methods = {"pretrained": {"true_p50": 0.125, "true_p100": 0.375, "feasible": 1.0},
                       "gradient_guidance": {"n": 128, "true_p50": p50, "true_p100": 1.0, "feasible": 0.5}}
            (job / "metrics.json").write_text(json.dumps({
                "task": task, "seed": seed, "best_offline": 0.5, "methods": methods,
                "timings": {"total_s": 120.0}}).replace("-Infinity", '"-inf"'))
    return root


def test_each_instance_is_one_row_beside_the_prior_and_the_best_offline(tmp_path):
    solved = make_sweep(tmp_path / "a", "ehrlich_s24_l32_m2x4_q4_seed5", [1.0, 0.75])
    failed = make_sweep(tmp_path / "b", "ehrlich_s16_l24_m3x3_q3_seed3", [0.25, float("-inf")])
    out = tmp_path / "compared"
    main(["--sweeps", str(solved), str(failed), "--out", str(out)])
    text = out.with_suffix(".md").read_text()
    assert "| ehrlich_s24_l32_m2x4_q4_seed5 (0.500) | 2 | 0.875 ± 0.125 | 1.000 ± 0.000 | 0.500 ± 0.000 " \
           "| 0.125 ± 0.000 | 0.375 ± 0.000 | 1.000 ± 0.000 | 2.0 | yes |" in text
    assert "| ehrlich_s16_l24_m3x3_q3_seed3 (0.500) | 2 | -inf |" in text  # no standard error of -inf
    assert "above the best offline label on 1 of 2 instances" in text
    assert len(json.loads(out.with_suffix(".json").read_text())) == 4


def test_an_unfinished_job_stops_the_table(tmp_path):
    with pytest.raises(SystemExit, match="job 0 did not finish"):
        main(["--sweeps", str(make_sweep(tmp_path / "a", "x", [0.5, 0.5], finished=False)),
              "--out", str(tmp_path / "out")])
