"""CTRL's starting points: the pretrained model with zero-initialized condition embeddings, or a fresh
conditional model (the from-scratch baseline). The network itself is
:class:`mbo.diffusion.denoiser.ConditionalDenoiser`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from mbo.diffusion.denoiser import ConditionalDenoiser
from mbo.diffusion.masked import MaskedDiffusion


def make_conditional(pretrained: MaskedDiffusion, num_classes: Sequence[int]) -> MaskedDiffusion:
    """A new ``MaskedDiffusion`` whose denoiser is a copy of ``pretrained``'s with zero-init condition
    embeddings; ``pretrained`` itself is not modified."""
    denoiser = ConditionalDenoiser(copy.deepcopy(pretrained.denoiser), num_classes)
    return MaskedDiffusion(denoiser, pretrained.vocab_size, pretrained.length, eps=pretrained.eps,
                           schedule=pretrained.schedule, sampler=pretrained.sampler,
                           policy=pretrained.policy).to(pretrained.device)


def conditional_from_scratch(config: dict, num_classes: Sequence[int], vocab_size: int, length: int,
                             base_class: str = "TransformerDenoiser", seed: int = 0) -> MaskedDiffusion:
    """A randomly initialized conditional model of the given denoiser ``config`` (baseline)."""
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        denoiser = ConditionalDenoiser(dict(config), num_classes, base_class=base_class)
    return MaskedDiffusion(denoiser, vocab_size, length)
