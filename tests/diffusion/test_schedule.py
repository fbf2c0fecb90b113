import math

import pytest
import torch

from mbo.diffusion import CosineSchedule, LinearSchedule, MaskedDiffusion, TransformerDenoiser, get_schedule

SCHEDULES = [LinearSchedule(), CosineSchedule()]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
def test_unmask_prob_agrees_with_mask_prob(schedule):
    # P(masked at s) = P(masked at t) · (1 − P(unmask between t and s)), for every t > s.
    grid = torch.linspace(1.0, 0.0, 9, dtype=torch.float64)
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        p = schedule.unmask_prob(t, s)
        assert 0.0 <= p <= 1.0
        left = float(schedule.mask_prob(torch.tensor(s, dtype=torch.float64)))
        right = float(schedule.mask_prob(torch.tensor(t, dtype=torch.float64))) * (1 - p)
        assert left == pytest.approx(right, abs=1e-12)
    assert schedule.unmask_prob(0.5, 0.0) == 1.0
    assert float(schedule.mask_prob(torch.tensor(1.0))) == pytest.approx(1.0)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
def test_nelbo_is_the_same_bound_under_every_schedule(schedule):
    # A denoiser that predicts the uniform distribution: -log p(x) = L log V exactly, and the
    # continuous-time NELBO equals it whatever the schedule (only its variance differs).
    torch.manual_seed(0)
    net = TransformerDenoiser(5, 6, dim=16, depth=1, heads=2)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    m = MaskedDiffusion(net, 5, 6, schedule=schedule).eval()
    x0 = torch.randint(0, 5, (512, 6), generator=torch.Generator().manual_seed(1))
    nelbo = -m.elbo(x0, n_samples=64, generator=torch.Generator().manual_seed(2)).mean() / 6
    assert float(nelbo) == pytest.approx(math.log(5), rel=0.01)


def test_get_schedule_by_name():
    assert isinstance(get_schedule("cosine"), CosineSchedule)
    with pytest.raises(ValueError, match="unknown schedule"):
        get_schedule("sigmoid")


def test_cosine_weight_and_mask_prob_are_exact_near_t_zero():
    # 1 − cos(πt/2) cancels in float32 (to exactly 0 below t ≈ 1.5e-4, 1.5 % off at t = 1e-3); the
    # weight was then inf, and 0 · inf = NaN for a row with nothing masked.
    schedule = CosineSchedule()
    t = torch.tensor([1e-6, 1e-5, 1e-4, 1e-3, 0.1, 0.5, 1.0])
    t64 = t.double()
    want_mask = 1.0 - torch.cos(0.5 * math.pi * t64)
    want_mask[:4] = (0.5 * math.pi * t64[:4]) ** 2 / 2  # the series: float64 cancels too, a little
    want_weight = 0.5 * math.pi * torch.sin(0.5 * math.pi * t64) / want_mask
    assert torch.allclose(schedule.mask_prob(t).double(), want_mask, rtol=1e-5)
    assert torch.allclose(schedule.weigh(torch.ones(7), t).double(), want_weight, rtol=1e-5)
    assert torch.equal(schedule.weigh(torch.zeros(7), t), torch.zeros(7))


def test_cosine_elbo_is_finite_with_a_small_eps():
    torch.manual_seed(0)
    m = MaskedDiffusion(TransformerDenoiser(3, 4, dim=16, depth=1, heads=2), 3, 4, eps=1e-5,
                        schedule="cosine").eval()
    x0 = torch.randint(0, 3, (2, 4), generator=torch.Generator().manual_seed(1))
    # 8192 stratified times per sequence: the smallest is below 1.3e-4.
    elbo = m.elbo(x0, n_samples=8192, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(elbo).all()
