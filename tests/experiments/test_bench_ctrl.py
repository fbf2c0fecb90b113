"""bench_ctrl runs fine-tuner variants beside each other: a variant is the app's settings of its
ctrl/finetune option with the given keys changed, so a row says exactly what ran."""

import pytest

from experiments.bench_ctrl import FINETUNE, finetuner_variants


def test_a_variant_is_the_apps_settings_with_its_keys_changed():
    variants = finetuner_variants(["vidd", "vidd:completion=argmax,iterations=7"])
    assert list(variants) == ["vidd", "vidd:completion=argmax,iterations=7"]
    plain, changed = variants["vidd"], variants["vidd:completion=argmax,iterations=7"]
    assert plain == FINETUNE["vidd"]
    assert changed.completion == "argmax" and changed.iterations == 7
    assert {k: v for k, v in changed.items() if k not in ("completion", "iterations")} == \
        {k: v for k, v in plain.items() if k not in ("completion", "iterations")}


def test_an_unknown_finetuner_is_refused_by_name():
    with pytest.raises(SystemExit, match="unknown fine-tuner 'adam'"):
        finetuner_variants(["adam:lr=1"])


def test_ranked_draws_keep_the_distinct_designs_of_highest_log_p():
    import torch

    from experiments.bench_ctrl import N_DESIGNS, ranked_draws

    class Model:  # draws 2 × N_DESIGNS rows, each row twice
        def sample(self, k, sampler, generator, ref, cond):
            rows = torch.arange(k // 2)[:, None].expand(-1, 8) % 4
            rows = rows + (torch.arange(k // 2)[:, None] // 4 % 4) * (torch.arange(8) == 0)
            return torch.cat([rows, rows]) % 4

    def log_p(x, code):  # prefers token 3 at position 1, then token 2 at position 0
        return x[:, 1, 3] + 0.5 * x[:, 0, 2]

    out = ranked_draws(Model(), None, log_p, torch.zeros(2), oversample=2, generator=None)
    assert len(out) == len(torch.unique(out, dim=0)) <= N_DESIGNS
    scores = (out[:, 1] == 3).float() + 0.5 * (out[:, 0] == 2).float()
    assert scores.tolist() == sorted(scores.tolist(), reverse=True) and scores[0] == 1.5
