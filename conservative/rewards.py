"""Pessimistic and optimistic rewards built from any reward model with uncertainty.

BRAID (arXiv 2405.19673) fine-tunes against ``r_c(x) = r̂(x) − c·ĝ(x)``, where ĝ grows away from the
offline data, so the optimizer is not rewarded for leaving the region the model has seen. SEIKO's
exploration uses the mirror image ``r̂(x) + c·ĝ(x)``.

A reward model here is anything with ``mean_std(x: float (N, L, V)) -> (mean (N,), std (N,))``
(ensembles, GPs, :class:`reward_models.FeatureBonus`); the ``"min"``/``"quantile"`` penalties also need
``member_predictions(x) -> (K, N)`` (ensembles).
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import torch
from torch import Tensor, nn

Penalty = Literal["std", "min", "quantile"]


class ConservativeReward(nn.Module):
    """``r̂ + sign·c·ĝ``, with ĝ the model's std or the members' reach below (above) their mean.

    Args:
        model: a reward model exposing ``mean_std`` (and ``member_predictions`` for min/quantile).
        c: uncertainty coefficient; ``c = 0`` gives the plain mean (the naive baseline) whatever the
            penalty.
        penalty: ĝ is the model's predictive std (``"std"``); the mean minus the lowest member
            (``"min"``; the highest minus the mean for optimism), so that ``c = 1`` scores the lowest
            member; or the mean minus a low member quantile (``"quantile"``; a high one minus the mean
            for optimism), ``c = 1`` scoring that quantile.
        quantile: the member quantile for ``penalty="quantile"`` (pessimistic side; optimism mirrors it).
    """

    sign: float = -1.0

    def __init__(self, model, c: float = 1.0, penalty: Penalty = "std", quantile: float = 0.1):
        super().__init__()
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 <= c < math.inf:
            # NaN would make every reward NaN and inf every one -inf; "auto" is settled before this
            # (conservative.auto), from the offline data.
            raise ValueError(f"c must be a finite number >= 0, got {c!r}")
        if penalty not in ("std", "min", "quantile"):
            raise ValueError(f"unknown penalty {penalty!r}; expected 'std', 'min' or 'quantile'")
        if penalty != "std" and not hasattr(model, "member_predictions"):
            raise ValueError(f"penalty={penalty!r} needs an ensemble model with member_predictions")
        if not 0.0 < quantile < 0.5:
            raise ValueError(f"quantile must be in (0, 0.5), got {quantile}")
        self.model = model
        self.c = float(c)
        self.penalty = penalty
        self.quantile = quantile

    def components(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted mean ``(N,)`` and uncertainty ĝ ``(N,)`` for float (soft) one-hot ``x (N, L, V)``."""
        if self.penalty == "std":
            return self.model.mean_std(x)
        members = self.model.member_predictions(x)  # (K, N)
        mean = members.mean(0)
        if self.penalty == "min":
            edge = members.min(0).values if self.sign < 0 else members.max(0).values
        else:
            edge = torch.quantile(members, self.quantile if self.sign < 0 else 1.0 - self.quantile, dim=0)
        # Signed, so that c = 1 scores exactly the edge member (or quantile) on either side.
        return mean, self.sign * (edge - mean)

    def forward(self, x: Tensor) -> Tensor:
        """The conservative (or optimistic) score ``(N,)`` of ``x (N, L, V)``; differentiable in ``x``."""
        mean, g = self.components(x)
        return mean + self.sign * self.c * g


class PessimisticReward(ConservativeReward):
    """``r̂ − c·ĝ``: the BRAID conservative reward for offline fine-tuning."""

    sign = -1.0


class OptimisticReward(ConservativeReward):
    """``r̂ + c·ĝ``: the optimistic reward for exploration (SEIKO)."""

    sign = 1.0


def label_scale(labels: Tensor) -> float:
    """The spread of one objective's measured labels ``(N,)``: the std in float64 of the finite ones
    (``-inf``, a design measured infeasible, has no value to spread; it made the std NaN, and the
    scale silently 1), or 1.0 with fewer than two or all equal. The unit in which
    :class:`ScaledReward` expresses a reward.

    Raises:
        ValueError: labels of several objectives ``(N, k)``: each column has its own spread.
    """
    if labels.dim() != 1:
        raise ValueError(f"label_scale: labels must be one objective's (N,), got {tuple(labels.shape)}; "
                         "scale each objective by its own column")
    finite = labels.double()[torch.isfinite(labels)]
    std = float(finite.std()) if finite.numel() > 1 else 0.0
    return std if std > 0 and math.isfinite(std) else 1.0


class ScaledReward(nn.Module):
    """``reward(x) / scale``: a reward in units of the labels' spread.

    Fine-tuners aim at p_pre·exp(r/α); with r in units of std(y) one KL weight α means the same for
    labels in any unit (nM, log-fold change, 1e-9 or 1e30), and the gradients stay of order one.

    Args:
        reward: any reward callable (``(N, L, V) -> (N,)``); its ``components`` (r̂, ĝ) are scaled too.
        scale: the label spread, e.g. :func:`label_scale` of the offline labels.
    """

    def __init__(self, reward, scale: float):
        super().__init__()
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be positive and finite, got {scale}")
        self.reward = reward
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.reward(x) / self.scale

    @property
    def components(self):
        """The wrapped reward's ``components(x) -> (r̂, ĝ)``, scaled; absent when it has none."""
        inner = self.reward.components  # AttributeError (so hasattr is False) when there is none
        return lambda x: tuple(v / self.scale for v in inner(x))
