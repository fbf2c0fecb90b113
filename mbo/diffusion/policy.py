"""Transforms of the denoiser's prediction into the distribution a reverse step actually draws from.

A masked model's policy at a reverse step is x̂_θ(x_t) restricted by rules that hold for every design:
tokens that are not allowed at a position (a fixed flank, an allowed set per position: see
:mod:`mbo.constraints`), or tokens the model itself gives next to no chance (min-p truncation). A
:class:`PolicyTransform` maps log x̂ ``(B, L, V)`` to the log-probabilities the step draws from, and
:meth:`MaskedDiffusion.policy_log_probs` applies it everywhere a token is drawn or a policy is scored:
sampling, guidance, every fine-tuner's log-probs and the per-step KL, which therefore stay exact for
the transformed policy (model and reference are transformed alike). Training and the ELBO use the
untransformed prediction: they measure the model of the data, not the sampling rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

LOG_ZERO = -1e4
"""Stand-in for log 0 (as in :mod:`mbo.diffusion.masked`): finite, so KLs and gradients stay finite."""

PolicyTransform = Callable[[Tensor], Tensor]
"""``log x̂ (B, L, V) -> log-probs (B, L, V)``, normalized over V."""


def restrict(log_probs: Tensor, keep: Tensor) -> Tensor:
    """``log_probs`` renormalized over the tokens where ``keep`` (broadcastable to it) is True."""
    return torch.log_softmax(torch.where(keep, log_probs, LOG_ZERO), dim=-1)


def on_support(log_probs: Tensor, log_ref: Tensor) -> Tensor:
    """``log_probs (..., V)`` restricted to the tokens the reference's ``log_ref`` can draw.

    A fine-tuned policy is trained with the KL to its reference, and any mass where the reference's
    policy cuts a token (min-p, constraints) has an infinite KL, whose LOG_ZERO stand-in (1e4 nats a
    unit of probability) would swamp the reward. Rows that put no mass where the reference cuts are
    returned unchanged (bit for bit, so the KL of a model to itself stays exactly 0).
    """
    cut = log_ref <= LOG_ZERO / 2
    off = (cut & (log_probs > LOG_ZERO / 2)).any(-1, keepdim=True)
    return torch.where(off, restrict(log_probs, ~cut), log_probs)


class MinProbability:
    """Min-p truncation: a token whose probability is below ``min_prob`` times that of the position's
    most likely token is not drawn; the rest are renormalized.

    Softmax outputs never reach zero, so a model that has learned that a token is impossible next to
    its neighbour still gives it a little mass at every position, and over a whole sequence those
    leaks add up (0.1 % per position is 3 % of 32-mers). Truncating relative to the top token removes
    such leaks while keeping every token the model finds plausible.

    Args:
        min_prob: the relative threshold in ``[0, 1)``; 0 is no truncation.
    """

    def __init__(self, min_prob: float) -> None:
        if not 0.0 <= float(min_prob) < 1.0:
            raise ValueError(f"min_prob must be in [0, 1), got {min_prob}")
        self.min_prob = float(min_prob)

    def __call__(self, log_probs: Tensor) -> Tensor:
        if self.min_prob == 0.0:
            return log_probs
        top = log_probs.max(-1, keepdim=True).values
        return restrict(log_probs, log_probs >= top + math.log(self.min_prob))

    def __repr__(self) -> str:
        return f"MinProbability({self.min_prob})"


class Compose:
    """Several transforms, applied in order."""

    def __init__(self, *transforms: PolicyTransform) -> None:
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, log_probs: Tensor) -> Tensor:
        for t in self.transforms:
            log_probs = t(log_probs)
        return log_probs

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.transforms))})"
