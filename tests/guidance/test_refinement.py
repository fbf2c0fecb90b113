"""Iterative refinement: never lowers a design's reward, budget, reproducibility, and it beats the prior."""

import pytest
import torch

from mbo.guidance import iterative_refinement
from tests.guidance import L, V, count_zero, gen, plain_mean, rewards_of, tiny_model

REFINE = dict(rounds=3, remask_fraction=0.34, candidates=4, alpha=0.0)  # m = round(0.34 · 6) = 2


@pytest.mark.parametrize("sampler", ["first_hitting", 8])
def test_never_lowers_a_reward_and_keeps_the_budget(sampler):
    model = tiny_model(sampler=sampler)
    start = model.sample(40, generator=gen(7))
    res = iterative_refinement(model, count_zero, 40, start=start, generator=gen(), **REFINE)
    assert torch.equal(res.rewards, rewards_of(res.designs))
    assert bool((res.rewards >= rewards_of(start)).all()) and res.rewards.mean() > rewards_of(start).mean()
    n, r, m, k = 40, REFINE["rounds"], REFINE["candidates"], 2
    if sampler == "first_hitting":
        assert res.reward_calls == n + r * n * (1 + m * k) and res.network_calls == r * n * (1 + m * (k - 1))
    else:
        assert res.reward_calls <= n + r * n * (1 + m * 8) and res.network_calls <= r * n * (1 + m * 8)
    assert 0.0 < res.info["accepted"] <= 1.0


def test_hostile_reward_changes_nothing():
    # The start is the reward's unique optimum: no round may replace it.
    model = tiny_model()
    start = torch.full((5, L), 3, dtype=torch.long)

    def reward(x):
        return x[..., 3].sum(-1)

    res = iterative_refinement(model, reward, 5, start=start, generator=gen(), **REFINE)
    assert torch.equal(res.designs, start) and res.info["accepted"] == 0.0


def test_reproducible_from_prior_samples_and_beats_them():
    model = tiny_model()
    a = iterative_refinement(model, count_zero, 100, generator=gen(2), **REFINE)
    b = iterative_refinement(model, count_zero, 100, generator=gen(2), **REFINE)
    assert torch.equal(a.designs, b.designs)
    assert a.network_calls <= 100 * 8 + 3 * 100 * (1 + 4 * 8)  # the start's samples are counted
    assert a.rewards.mean() > plain_mean(model) + 1.0


def test_bad_start_and_settings_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"start must be a LongTensor \(3, 6\)"):
        iterative_refinement(model, count_zero, 3, start=torch.zeros(2, L, dtype=torch.long), **REFINE)
    with pytest.raises(ValueError, match=r"start has tokens outside \[0, 3\]"):
        iterative_refinement(model, count_zero, 2, start=torch.full((2, L), V), **REFINE)
    with pytest.raises(ValueError, match=r"remask_fraction must lie in \(0, 1\]"):
        iterative_refinement(model, count_zero, 2, **{**REFINE, "remask_fraction": 0.0})
