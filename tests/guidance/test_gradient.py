"""Gradient guidance: scale 0 is plain sampling, the budget, the hook's contract, and it beats the prior."""

import pytest
import torch

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
