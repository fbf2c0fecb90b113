"""Which positions a reverse step unmasks: the policy-free half of a masked-diffusion sampler.

Every reverse step of a masked model (``MaskedDiffusion.step``) does two things: decide which masked
positions unmask now (policy-free: the same for every model, so it drops out of log-prob ratios and
KLs), and draw their tokens from the denoiser (the policy). A sampler here is the first half.

- :class:`GridSampler` (``steps`` steps on a uniform time grid): each masked position unmasks with the
  schedule's probability (α_s − α_t)/(1 − α_t), independently. Positions unmasked in the same step are
  drawn independently given the state: a factorization error where neighbours depend on each other,
  which shrinks as ``steps`` grows.
- :class:`FirstHittingSampler` (L steps): exactly one uniformly chosen masked position per step. Every
  token is drawn given all tokens placed before it, so this samples the model's joint exactly (exact
  when the denoiser's conditionals are), with L network calls.

A sampler's :meth:`unmask` returns both the draw and each position's unmask probability, which is what
the exact per-step KL between two policies needs: KL_t = Σ_i P(i unmasks) · KL(x̂_θ,i ‖ x̂_ref,i).
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from mbo.diffusion.schedule import Schedule


class Sampler(ABC):
    """How many reverse steps, and which masked positions each of them unmasks."""

    @abstractmethod
    def num_steps(self, length: int) -> int:
        """Reverse steps from all-MASK to clean for sequences of ``length``."""

    @abstractmethod
    def unmask_prob(self, masked: Tensor, k: int, schedule: Schedule) -> float | Tensor:
        """The probability that each masked position unmasks at step ``k`` given ``masked`` (bool
        ``(B, L)``): one float when it is the same for all of them, else float ``(B, L)``."""

    @abstractmethod
    def unmask(self, masked: Tensor, k: int, schedule: Schedule,
               generator: torch.Generator | None) -> tuple[Tensor, float | Tensor]:
        """Draw the positions step ``k`` (0-based, from all-MASK) unmasks.

        Args:
            masked: bool ``(B, L)``, positions still masked.
            k: the step's index, ``0 .. num_steps - 1``.
            schedule: the diffusion's noise schedule.
            generator: RNG.

        Returns:
            ``(unmask, prob)``: bool ``(B, L)`` (a subset of ``masked``) and the probability each
            masked position unmasks at this step given ``masked``: one float when it is the same for
            all of them, else float ``(B, L)``.
        """


class GridSampler(Sampler):
    """Ancestral sampling on the grid t_k = 1 − k / steps (see the module docstring).

    Args:
        steps: reverse steps; the last one (to t = 0) unmasks everything left.
    """

    def __init__(self, steps: int = 32) -> None:
        # int(2.7) would silently run 2 steps.
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
            raise TypeError(f"GridSampler: steps must be an integer, got {steps!r}")
        if steps < 1:
            raise ValueError(f"GridSampler: steps must be >= 1, got {steps}")
        self.steps = int(steps)

    def num_steps(self, length: int) -> int:
        return self.steps

    def times(self, k: int) -> tuple[float, float]:
        """``(t, s)`` of step ``k``: t = 1 − k/steps, s = 1 − (k+1)/steps."""
        n = self.steps
        return (n - k) / n, (n - k - 1) / n

    def unmask_prob(self, masked: Tensor, k: int, schedule: Schedule) -> float:
        return schedule.unmask_prob(*self.times(k))

    def unmask(self, masked: Tensor, k: int, schedule: Schedule,
               generator: torch.Generator | None) -> tuple[Tensor, float | Tensor]:
        p = self.unmask_prob(masked, k, schedule)
        draw = torch.rand(masked.shape, dtype=torch.float32, device=masked.device, generator=generator) < p
        return masked & draw, p

    def __repr__(self) -> str:
        return f"GridSampler(steps={self.steps})"


class FirstHittingSampler(Sampler):
    """One uniformly chosen masked position per step, L steps (see the module docstring)."""

    def num_steps(self, length: int) -> int:
        return length

    def unmask_prob(self, masked: Tensor, k: int, schedule: Schedule) -> Tensor:
        return masked.float() / masked.sum(-1, keepdim=True).clamp_min(1)

    def unmask(self, masked: Tensor, k: int, schedule: Schedule,
               generator: torch.Generator | None) -> tuple[Tensor, float | Tensor]:
        count = masked.sum(-1, keepdim=True)
        prob = self.unmask_prob(masked, k, schedule)
        # Gumbel-max over the masked positions: a uniform choice among them, one per row.
        u = torch.rand(masked.shape, dtype=torch.float32, device=masked.device, generator=generator)
        score = torch.where(masked, u, -1.0)
        pick = torch.nn.functional.one_hot(score.argmax(-1), masked.shape[-1]).bool()
        return pick & masked & (count > 0), prob

    def __repr__(self) -> str:
        return "FirstHittingSampler()"


def get_sampler(sampler: Sampler | int | str) -> Sampler:
    """A :class:`Sampler` from itself, a number of grid steps, or ``"first_hitting"``."""
    if isinstance(sampler, Sampler):
        return sampler
    if isinstance(sampler, str):
        if sampler == "first_hitting":
            return FirstHittingSampler()
        raise ValueError(f"unknown sampler {sampler!r}; give a number of grid steps or 'first_hitting'")
    if isinstance(sampler, bool) or not isinstance(sampler, int):
        raise TypeError(f"sampler must be a Sampler, an int (grid steps) or 'first_hitting', got "
                        f"{type(sampler).__name__}")
    return GridSampler(sampler)
