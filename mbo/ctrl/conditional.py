"""The conditional denoiser: a pretrained network plus zero-initialized condition embeddings.

Each factor f has an embedding table of ``C_f + 1`` rows (the last is the null "any class" row, kept
at zero); the condition's rows are summed and added to the network's hidden input. All rows start at
zero, so before training the conditional model IS the pretrained model for every condition, and the
null condition stays the unconditional model throughout.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mbo.diffusion.denoiser import DENOISERS
from mbo.diffusion.masked import MaskedDiffusion


class ConditionalDenoiser(nn.Module):
    """Wraps a denoiser that accepts ``hidden_shift`` (e.g. ``TransformerDenoiser``).

    Args:
        base: the (pretrained) denoiser module, or its config dict to build a fresh one.
        num_classes: ``C_f`` per factor.
        base_class: denoiser class name (in ``DENOISERS``) when ``base`` is a config.
    """

    def __init__(self, base: nn.Module | dict, num_classes: Sequence[int],
                 base_class: str = "TransformerDenoiser") -> None:
        super().__init__()
        if isinstance(base, dict):
            if base_class not in DENOISERS:
                raise ValueError(f"unknown denoiser class {base_class!r} (known: {sorted(DENOISERS)})")
            base = DENOISERS[base_class](**base)
        if not num_classes or min(num_classes) < 1:
            raise ValueError(f"num_classes must list >= 1 class per factor, got {list(num_classes)}")
        self.base = base
        self.num_classes = [int(c) for c in num_classes]
        dim = base.config["dim"]
        self.embeddings = nn.ModuleList(
            nn.Embedding(c + 1, dim, padding_idx=c) for c in self.num_classes
        )
        for emb in self.embeddings:
            nn.init.zeros_(emb.weight)
        self.config = {"base": dict(base.config), "base_class": type(base).__name__,
                       "num_classes": self.num_classes}
        self.vocab_size = base.config["vocab_size"]
        self.length = base.config["length"]

    @property
    def null_condition(self) -> Tensor:
        """LongTensor ``(F,)``: every factor null."""
        return torch.tensor(self.num_classes, dtype=torch.long)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Logits ``(B, L, V)`` of ``x (B, L, V+1)`` under condition ``cond`` LongTensor ``(B, F)``.

        ``cond=None`` (or all-null rows) gives exactly the base network's output.
        """
        if cond is None:
            return self.base(x)
        if cond.dim() != 2 or cond.shape != (x.shape[0], len(self.num_classes)):
            raise ValueError(f"cond must be LongTensor ({x.shape[0]}, {len(self.num_classes)}), "
                             f"got {tuple(cond.shape)}")
        shift = sum(emb(cond[:, j]) for j, emb in enumerate(self.embeddings))
        return self.base(x, hidden_shift=shift.to(x.dtype))


DENOISERS.setdefault("ConditionalDenoiser", ConditionalDenoiser)


def make_conditional(pretrained: MaskedDiffusion, num_classes: Sequence[int]) -> MaskedDiffusion:
    """A new ``MaskedDiffusion`` whose denoiser is a copy of ``pretrained``'s with zero-init condition
    embeddings; ``pretrained`` itself is not modified."""
    denoiser = ConditionalDenoiser(copy.deepcopy(pretrained.denoiser), num_classes)
    return MaskedDiffusion(denoiser, pretrained.vocab_size, pretrained.length,
                           eps=pretrained.eps).to(pretrained.device)


def conditional_from_scratch(config: dict, num_classes: Sequence[int], vocab_size: int, length: int,
                             base_class: str = "TransformerDenoiser", seed: int = 0) -> MaskedDiffusion:
    """A randomly initialized conditional model of the given denoiser ``config`` (baseline)."""
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        denoiser = ConditionalDenoiser(dict(config), num_classes, base_class=base_class)
    return MaskedDiffusion(denoiser, vocab_size, length)
