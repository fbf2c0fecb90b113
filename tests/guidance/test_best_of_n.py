"""Best-of-N: shapes, reproducibility, budget, N = 1 is plain sampling, and it beats the prior."""

import pytest
import torch

from mbo.guidance import best_of_n
from tests.guidance import L, count_zero, gen, plain_mean, rewards_of, rows_that_unmask, tiny_model


@pytest.mark.parametrize("sampler", [5, "first_hitting"])
def test_budget_shapes_and_rewards(sampler):
    model = tiny_model(sampler=sampler)
    steps = 5 if sampler == 5 else L
    res = best_of_n(model, count_zero, 7, num_samples=3, generator=gen())
    assert res.designs.shape == (7, L) and torch.equal(res.rewards, rewards_of(res.designs))
    # A step calls the network for the samples that unmask a position: all of them at every step of the
    # first-hitting sampler, fewer on the grid (5 steps for 6 positions).
    calls = rows_that_unmask(model, 7 * 3, gen())
    assert res.reward_calls == 7 * 3 and res.network_calls == calls
    assert calls == 7 * 3 * steps if sampler == "first_hitting" else calls < 7 * 3 * steps


def test_reproducible_and_one_sample_is_plain_sampling():
    model = tiny_model()
    a = best_of_n(model, count_zero, 9, num_samples=4, generator=gen(3))
    b = best_of_n(model, count_zero, 9, num_samples=4, generator=gen(3))
    assert torch.equal(a.designs, b.designs)
    one = best_of_n(model, count_zero, 9, num_samples=1, generator=gen(3))
    assert torch.equal(one.designs, model.sample(9, generator=gen(3)))


def test_chunks_keep_the_budget_and_each_design_is_the_best_of_its_own_samples():
    model = tiny_model()
    res = best_of_n(model, count_zero, 5, num_samples=4, batch_size=4, generator=gen(1))
    g = gen(1)
    calls = sum(rows_that_unmask(model, 4, g) for _ in range(5))
    assert res.reward_calls == 20 and res.network_calls == calls
    g = gen(1)
    pool = torch.cat([model.sample(4, generator=g) for _ in range(5)])
    best = rewards_of(pool).view(5, 4).max(-1).values
    assert torch.equal(res.rewards, best)


def test_beats_pretrained_samples():
    model = tiny_model()
    res = best_of_n(model, count_zero, 200, num_samples=8, generator=gen())
    assert res.rewards.mean() > plain_mean(model) + 1.0
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        best_of_n(model, count_zero, 2, num_samples=0)
