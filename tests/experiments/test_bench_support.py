import json
import math
import statistics

import pytest
import torch

from experiments.bench_support import banned_tokens, main


def test_banned_tokens_matches_the_transitions_with_each_unmasked_neighbour():
    gen = torch.Generator().manual_seed(0)
    allowed = torch.rand(4, 4, generator=gen) > 0.4
    xt = torch.randint(0, 5, (64, 5), generator=gen)  # token 4 is MASK
    pos = torch.randint(0, 5, (64,), generator=gen)
    got = banned_tokens(allowed, xt, pos, mask_id=4)
    for b in range(64):
        p, left, right = int(pos[b]), None, None
        if p > 0 and xt[b, p - 1] != 4:
            left = int(xt[b, p - 1])
        if p < 4 and xt[b, p + 1] != 4:
            right = int(xt[b, p + 1])
        for v in range(4):
            ban = (left is not None and not allowed[left, v]) or (right is not None and not allowed[v, right])
            assert bool(got[b, v]) == ban


def test_table_cells_are_mean_and_sample_standard_error_over_seeds(tmp_path):
    # Runs already on disk are read, not rerun: the table is built from them alone.
    out = tmp_path / "support"
    (out / "runs").mkdir(parents=True)
    feasible = [0.5, 0.7, 0.9]
    for seed, f in enumerate(feasible):
        run = {"instance": "L32", "seed": seed, "task": "t", "states": 8, "prior_mass": 1e-5 * (seed + 1),
               "target_mass": {"0.1|0": 0.1 * seed}, "feasible": {"0": f},
               "settings": {"states": 8, "samples": 2000, "alphas": [0.1], "min_probs": [0.0]}}
        (out / "runs" / f"L32_seed{seed}.json").write_text(json.dumps(run))
    main(["--instances", "L32", "--seeds", "0", "1", "2", "--alphas", "0.1", "--min-probs", "0",
          "--out", str(out)])
    text = out.with_suffix(".md").read_text()
    se = statistics.stdev(feasible) / math.sqrt(3)  # ddof = 1
    assert f"| 0 | {0.7:.4f} ± {se:.4f} | {0.1:.4f} ± {0.1 / math.sqrt(3):.4f} |" in text
    assert "|---:|---:|---:|" in text and "2.00e-05 ± 5.77e-06" in text


def test_a_run_saved_with_other_settings_is_refused_not_reused(tmp_path):
    out = tmp_path / "support"
    (out / "runs").mkdir(parents=True)
    run = {"instance": "L32", "seed": 0, "task": "t", "states": 8, "prior_mass": 0.0, "target_mass": {},
           "feasible": {}, "settings": {"states": 8, "samples": 1000, "alphas": [0.1], "min_probs": [0.0]}}
    (out / "runs" / "L32_seed0.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit, match="saved with other settings"):
        main(["--instances", "L32", "--seeds", "0", "--alphas", "0.1", "--min-probs", "0", "--out", str(out)])
    with pytest.raises(SystemExit):
        main(["--samples", "700", "--out", str(out)])
