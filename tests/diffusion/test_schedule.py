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
