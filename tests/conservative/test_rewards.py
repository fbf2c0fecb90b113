import math

import pytest
import torch
from torch import nn

from conservative import OptimisticReward, PessimisticReward, ScaledReward, label_scale


class LinearEnsemble(nn.Module):
    """K linear members over one-hot: enough structure to check every penalty exactly."""

    def __init__(self, k=5, length=3, vocab=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(k, length * vocab, generator=g))

    def member_predictions(self, x):
        return self.w @ x.flatten(1).T

    def mean_std(self, x):
        m = self.member_predictions(x)
        return m.mean(0), m.std(0)


def soft_onehot(n=6, length=3, vocab=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, length, vocab, generator=g), -1).requires_grad_()


def test_std_penalty_is_mean_minus_and_plus_c_std():
    model, x = LinearEnsemble(), soft_onehot()
    mean, std = model.mean_std(x)
    torch.testing.assert_close(PessimisticReward(model, c=2.0)(x), mean - 2.0 * std)
    torch.testing.assert_close(OptimisticReward(model, c=2.0)(x), mean + 2.0 * std)
    torch.testing.assert_close(PessimisticReward(model, c=0.0)(x), mean)


def test_member_order_statistics():
    model, x = LinearEnsemble(), soft_onehot()
    members = model.member_predictions(x)
    mean = members.mean(0)
    # c = 1 scores the lowest (highest) member or quantile, c = 0 the plain mean, c between them.
    torch.testing.assert_close(PessimisticReward(model, penalty="min")(x), members.min(0).values)
    torch.testing.assert_close(OptimisticReward(model, penalty="min")(x), members.max(0).values)
    low = PessimisticReward(model, penalty="quantile", quantile=0.2)(x)
    high = OptimisticReward(model, penalty="quantile", quantile=0.2)(x)
    torch.testing.assert_close(low, torch.quantile(members, 0.2, dim=0))
    torch.testing.assert_close(high, torch.quantile(members, 0.8, dim=0))
    for penalty in ("min", "quantile"):
        torch.testing.assert_close(PessimisticReward(model, c=0.0, penalty=penalty)(x), mean)
        edge = PessimisticReward(model, c=1.0, penalty=penalty)(x)
        torch.testing.assert_close(PessimisticReward(model, c=0.5, penalty=penalty)(x), (mean + edge) / 2)
        components = PessimisticReward(model, c=2.0, penalty=penalty).components(x)
        torch.testing.assert_close(components, (mean, mean - edge))


@pytest.mark.parametrize("penalty", ["std", "min", "quantile"])
def test_differentiable_on_soft_onehot(penalty):
    x = soft_onehot()
    PessimisticReward(LinearEnsemble(), penalty=penalty)(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_arguments_are_refused():
    class MeanOnly(nn.Module):
        def mean_std(self, x):
            return x.sum((1, 2)), x.sum((1, 2))

    for c in (-1, float("nan"), float("inf"), "auto"):
        with pytest.raises(ValueError, match="c must be a finite number >= 0"):
            PessimisticReward(LinearEnsemble(), c=c)
    with pytest.raises(ValueError, match="member_predictions"):
        PessimisticReward(MeanOnly(), penalty="min")
    with pytest.raises(ValueError, match="unknown penalty"):
        PessimisticReward(LinearEnsemble(), penalty="max")


def test_scaled_reward_divides_reward_and_components():
    model, x = LinearEnsemble(), soft_onehot()
    base = PessimisticReward(model, c=1.0)
    scaled = ScaledReward(base, 4.0)
    torch.testing.assert_close(scaled(x), base(x) / 4.0)
    mean, g = scaled.components(x)
    torch.testing.assert_close(mean, model.mean_std(x)[0] / 4.0)
    torch.testing.assert_close(g, model.mean_std(x)[1] / 4.0)
    assert not hasattr(ScaledReward(lambda z: z.sum((1, 2)), 2.0), "components")
    assert label_scale(torch.tensor([1e30, 3e30])) == pytest.approx(1.4142135e30)
    assert label_scale(torch.tensor([2.0, 2.0])) == 1.0
    # A design measured infeasible has no value to spread: the std of the others.
    assert label_scale(torch.tensor([1.0, 3.0, -math.inf])) == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError, match=r"one objective's \(N,\), got \(2, 2\)"):
        label_scale(torch.ones(2, 2))
    with pytest.raises(ValueError):
        ScaledReward(base, 0.0)
