"""Gradient guidance: scale 0 is plain sampling, the budget, the hook's contract, and it beats the prior."""

import pytest
import torch

from mbo.diffusion.policy import restrict
from mbo.guidance import gradient_guidance, reward_guidance
from tests.guidance import L, V, count_zero, gen, plain_mean, rewards_of, rows_that_unmask, tiny_model


def test_scale_zero_is_plain_sampling_and_calls_no_gradient():
    model = tiny_model()
    res = gradient_guidance(model, count_zero, 12, alpha=0.5, scale=0.0, generator=gen(4))
    assert torch.equal(res.designs, model.sample(12, generator=gen(4)))
    assert res.reward_calls == 12 and res.network_calls == rows_that_unmask(model, 12, gen(4))


@pytest.mark.parametrize("sampler", [5, "first_hitting"])
def test_budget_reproducible_and_beats_pretrained_samples(sampler):
    model = tiny_model(sampler=sampler)
    steps = 5 if sampler == 5 else L
    a = gradient_guidance(model, count_zero, 100, alpha=0.5, scale=1.0, generator=gen())
    b = gradient_guidance(model, count_zero, 100, alpha=0.5, scale=1.0, generator=gen())
    assert torch.equal(a.designs, b.designs) and torch.equal(a.rewards, rewards_of(a.designs))
    # A gradient and a network call per row and step that unmasks a position (every one, first hitting).
    calls = rows_that_unmask(model, 100, gen(), guidance=reward_guidance(count_zero, 1.0 / 0.5))
    assert a.reward_calls == calls + 100 and a.network_calls == calls
    assert calls == 100 * steps if sampler == "first_hitting" else calls < 100 * steps
    assert a.rewards.mean() > plain_mean(model) + 1.0


def test_hook_tilts_by_the_gradient_and_keeps_carried_tokens():
    model = tiny_model()
    xt = torch.tensor([[2, V, V, V, V, V]])
    log_x0 = model.x0_log_probs(model.encode(xt))
    tilted = reward_guidance(count_zero, 2.0)(xt, log_x0, torch.arange(1))
    # d(count of 0)/d x̂ is 1 on token 0, 0 elsewhere: token 0 gains exactly 2 nats before renormalizing.
    assert torch.allclose(tilted[0, 1:], torch.log_softmax(log_x0[0, 1:] + 2.0 * torch.eye(V)[0], -1))
    assert tilted[0, 0].argmax() == 2 and tilted[0, 0].exp()[2] == 1.0
    assert reward_guidance(count_zero, 0.0)(xt, log_x0, torch.arange(1)) is log_x0


def test_non_differentiable_reward_and_bad_settings_are_refused():
    model = tiny_model()

    def black_box(x):
        return x.argmax(-1).eq(0).sum(-1).float()  # argmax: no gradient

    with pytest.raises(ValueError, match="differentiable"):
        gradient_guidance(model, black_box, 2, alpha=1.0, scale=1.0)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        gradient_guidance(model, count_zero, 2, alpha=0.0, scale=1.0)
    with pytest.raises(ValueError, match="scale must be a finite number >= 0"):
        gradient_guidance(model, count_zero, 2, alpha=1.0, scale=-1.0)


@pytest.mark.parametrize("alpha, scale_of_reward", [(1e-4, 1.0), (0.1, 1e6)])
def test_a_tilt_past_log_zero_never_draws_a_letter_the_policy_cuts(alpha, scale_of_reward):
    # Token 3 is cut at every position (a constraint's allowed set); the reward wants it. A tilt over
    # 1e4 nats (4/α·1 at α = 1e-4, or a reward on a 1e6 scale) once pushed the allowed letters below the
    # cut letter's LOG_ZERO, and every design was drawn with it.
    model = tiny_model()
    model.policy = lambda lp: restrict(lp, torch.tensor([True, True, True, False]))

    def wants_three(x):
        return scale_of_reward * x[..., 3].sum(-1)

    res = gradient_guidance(model, wants_three, 20, alpha=alpha, scale=4.0, generator=gen())
    assert not (res.designs == 3).any()


@pytest.mark.parametrize("alpha", [1e-40, 1e-300])
def test_a_vanishing_alpha_tilts_to_the_gradients_argmax_not_to_nan(alpha):
    # 4/α overflows float32 (and 4/1e-300·0 was NaN): the sampler then drew token 0 wherever the tilt
    # was NaN, whatever the reward wanted.
    model = tiny_model()
    res = gradient_guidance(model, lambda x: x[..., 2].sum(-1), 8, alpha=alpha, scale=4.0, generator=gen())
    assert (res.designs == 2).all()
    xt = torch.full((1, L), V)
    log_x0 = model.x0_log_probs(model.encode(xt))
    tilted = reward_guidance(lambda x: x[..., 2].sum(-1), 4.0 / alpha)(xt, log_x0, torch.arange(1))
    assert torch.isfinite(tilted).all() and (tilted.argmax(-1) == 2).all()


def test_a_reward_whose_gradient_is_not_finite_is_refused():
    model = tiny_model()

    def sqrt_reward(x):  # finite on hard one-hots, infinite gradient where a soft entry is 0
        return x.sqrt().sum((1, 2)) * 0 + (x[..., 0] - 1e-30).clamp_min(0).sqrt().sum(-1)

    with pytest.raises(ValueError, match="gradient is not finite"):
        gradient_guidance(model, sqrt_reward, 2, alpha=1.0, scale=1.0, generator=gen())
