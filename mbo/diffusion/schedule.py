"""Noise schedules of masked diffusion, picked by name (``diffusion.schedule`` in the config).

A schedule gives α_t, the probability that a token is still unmasked at time t ∈ [0, 1] (α_0 = 1,
α_1 = 0). Forward process: each token of x_0 is replaced by MASK independently with probability
1 − α_t. Reverse step t → s (s < t): a position still masked at t is unmasked at s with probability
(α_s − α_t) / (1 − α_t), its token drawn from the denoiser's x̂_θ(x_t).

Training minimizes the continuous-time NELBO (MDLM, arXiv 2406.07524):

    E_t [ w(t) · Σ_{i masked in x_t} −log x̂_θ(x_t)_i[x0_i] ],   w(t) = −α'_t / (1 − α_t),

which is an upper bound on −log p_θ(x_0) for every schedule; the schedule only changes where along t
the estimator spends its samples (its variance), and which positions a grid sampler unmasks together.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor


class Schedule(ABC):
    """α_t of a masked diffusion process (see the module docstring)."""

    name: str

    @abstractmethod
    def mask_prob(self, t: Tensor) -> Tensor:
        """1 − α_t: the probability that a token is masked at time ``t`` (any shape)."""

    @abstractmethod
    def weigh(self, nll: Tensor, t: Tensor) -> Tensor:
        """``w(t) · nll``: a masked token's summed cross-entropy ``nll`` weighted into the NELBO."""

    @abstractmethod
    def unmask_prob(self, t: float, s: float) -> float:
        """Probability that a position masked at time ``t`` is unmasked at time ``s < t`` (1 at s = 0)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearSchedule(Schedule):
    """α_t = 1 − t: a token is masked with probability t, the NELBO weight is 1/t (MDLM's default)."""

    name = "linear"

    def mask_prob(self, t: Tensor) -> Tensor:
        return t

    def weigh(self, nll: Tensor, t: Tensor) -> Tensor:
        return nll / t

    def unmask_prob(self, t: float, s: float) -> float:
        return 1.0 if s == 0 else (t - s) / t


class CosineSchedule(Schedule):
    """α_t = cos(π t / 2): fewer masks early in the reverse process than the linear schedule, more late."""

    name = "cosine"

    # 1 − cos(x) written as 2·sin²(x/2): in float32, 1 − cos(x) cancels to exactly 0 below t ≈ 2e-4
    # (and is 1.5 % off at t = 1e-3), which made w(t) = inf and 0 · inf = NaN for a row with no mask
    # when eps is small.
    def mask_prob(self, t: Tensor) -> Tensor:
        return 2.0 * torch.sin(0.25 * math.pi * t) ** 2

    def weigh(self, nll: Tensor, t: Tensor) -> Tensor:
        # w(t) = (π/2)·sin(πt/2) / (1 − cos(πt/2)) = (π/2) / tan(πt/4), finite for every t > 0.
        return nll * (0.5 * math.pi / torch.tan(0.25 * math.pi * t))

    def unmask_prob(self, t: float, s: float) -> float:
        if s == 0:
            return 1.0
        alpha_t, alpha_s = math.cos(0.5 * math.pi * t), math.cos(0.5 * math.pi * s)
        return (alpha_s - alpha_t) / (1.0 - alpha_t)


SCHEDULES: dict[str, type[Schedule]] = {cls.name: cls for cls in (LinearSchedule, CosineSchedule)}


def get_schedule(name: str | Schedule) -> Schedule:
    """The schedule called ``name`` (``linear`` or ``cosine``); a :class:`Schedule` passes through."""
    if isinstance(name, Schedule):
        return name
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name]()
