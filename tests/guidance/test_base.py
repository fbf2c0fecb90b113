"""Call counting, reward checks and the argument checks every method shares."""

import pytest
import torch

from mbo.guidance import (
    AlignmentResult,
    CallCounter,
    best_of_n,
    gradient_guidance,
    iterative_refinement,
    smc,
    svdd_mc,
    svdd_pm,
    svdd_rollout,
)
from mbo.guidance.base import clean_log_probs, refresh_log_probs, x0_log_probs
from mbo.guidance.values import lookahead
from tests.guidance import L, V, count_zero, gen, rewards_of, tiny_model

SETTINGS = {
    best_of_n: dict(num_samples=2),
    svdd_pm: dict(candidates=2, alpha=0.0),
    svdd_rollout: dict(candidates=2, alpha=0.0, keep="best_scored", selections=4),
    svdd_mc: dict(candidates=2, alpha=0.0, rollouts=8, value_steps=2, value_batch_size=4, value_lr=1e-3,
                  value_dim=8, value_depth=1),
    smc: dict(particles=2, alpha=1.0, ess_threshold=0.5, resampling="systematic"),
    gradient_guidance: dict(alpha=1.0, scale=1.0),
    iterative_refinement: dict(rounds=1, remask_fraction=0.5, candidates=2, alpha=0.0),
}


def test_counter_counts_network_rows_and_reward_sequences():
    model = tiny_model()
    with CallCounter(model, count_zero) as counter:
        model.sample(3, sampler="first_hitting", generator=gen())  # every row unmasks at every step
        scores = counter.score(torch.zeros(5, L, dtype=torch.long))
        result = counter.result(torch.zeros(5, L, dtype=torch.long), scores, extra=1.0)
    assert counter.network_calls == 3 * L and counter.reward_calls == 5
    assert torch.equal(scores, torch.full((5,), float(L)))
    assert isinstance(result, AlignmentResult) and result.info == {"extra": 1.0} and result.seconds >= 0
    model.sample(2, sampler=4)  # the hook is gone once the context closes
    assert counter.network_calls == 3 * L


def test_score_refuses_non_finite_and_misshapen_rewards():
    model = tiny_model()
    x = torch.zeros(4, L, dtype=torch.long)
    with CallCounter(model, lambda oh: torch.tensor([0.0, -float("inf"), 1.0, 2.0])) as c, \
            pytest.raises(ValueError, match=r"not finite for 1 of 4.*large negative finite"):
        c.score(x)
    with CallCounter(model, lambda oh: oh.sum((1, 2))[:, None]) as c, \
            pytest.raises(ValueError, match=r"reward must map \(B, L, V\) to \(B,\); got \(4, 1\)"):
        c.score(x)


def test_refresh_calls_the_network_only_for_changed_rows_with_masks():
    model = tiny_model()
    xs = torch.tensor([[V, 1, 2, 3, 0, 1], [0, 1, 2, 3, 0, 1], [V] * L])
    parent = torch.zeros(3, L, V)
    with CallCounter(model, count_zero) as counter:
        out = refresh_log_probs(model, xs, torch.tensor([True, True, False]), parent, batch_size=None)
    assert counter.network_calls == 1  # row 0 only: row 1 is clean, row 2 unchanged
    assert torch.allclose(out[0], x0_log_probs(model, xs[:1], None)[0])
    assert torch.equal(out[1], clean_log_probs(model, xs[1:2])[0]) and torch.equal(out[2], parent[2])
    assert torch.equal(out[1].argmax(-1), xs[1])


def test_lookahead_values_the_posterior_mean_and_is_exact_on_clean_rows():
    model = tiny_model()
    xs = torch.tensor([[V, 1, 2, V, 0, 1], [0, 1, 2, 3, 0, 1]])
    parent = torch.zeros(2, L, V)
    with CallCounter(model, count_zero) as counter:
        log_x0, value = lookahead(model, counter, xs, torch.tensor([True, True]), parent,
                                  torch.zeros(2))
    # count_zero is linear in the one-hot, so r(E[x_0 | x_t]) = E[r(x_0)] under the factorized
    # prediction: the clean zeros plus each masked position's probability of a 0.
    expected = 1 + log_x0[0, [0, 3], 0].exp().sum()
    assert torch.allclose(value[0], expected) and 0 < value[0] - 1 < 2
    assert value[1] == rewards_of(xs[1:])[0] == 2  # a clean row's value is its reward
    assert counter.reward_calls == 2


@pytest.mark.parametrize("method", list(SETTINGS), ids=lambda f: f.__name__)
def test_every_method_shares_the_signature_and_its_checks(method):
    model = tiny_model(sampler=3)
    res = method(model, count_zero, 3, generator=gen(), **SETTINGS[method])
    assert res.designs.shape == (3, L) and res.designs.dtype == torch.long
    assert res.rewards.shape == (3,) and res.rewards.dtype == torch.float32
    with pytest.raises(ValueError, match=f"{method.__name__}: n must be an integer >= 1, got 0"):
        method(model, count_zero, 0, **SETTINGS[method])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        method(model, count_zero, 2, batch_size=0, **SETTINGS[method])
    with pytest.raises(ValueError, match="diffusion must be a MaskedDiffusion"):
        method(model.denoiser, count_zero, 2, **SETTINGS[method])
    with pytest.raises(TypeError, match="missing"):
        method(model, count_zero, 2)  # settings have no defaults: the config group holds them


@pytest.mark.parametrize("method", [svdd_pm, svdd_rollout, smc, gradient_guidance, iterative_refinement],
                         ids=lambda f: f.__name__)
def test_alpha_is_checked(method):
    model = tiny_model(sampler=3)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha must be a finite number"):
            method(model, count_zero, 2, **{**SETTINGS[method], "alpha": bad})
