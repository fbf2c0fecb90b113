"""Shared tiny problems for the inference-time alignment tests (:mod:`mbo.guidance`)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from mbo.data.alphabet import one_hot
from mbo.diffusion import MaskedDiffusion, TransformerDenoiser, pretrain

V, L = 4, 6


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def count_zero(x: Tensor) -> Tensor:
    """Reward: the number of token-0 positions, ``(B, L, V) -> (B,)`` (differentiable in soft inputs)."""
    return x[..., 0].sum(-1)


def rewards_of(designs: Tensor, reward=count_zero, vocab: int = V) -> Tensor:
    return reward(one_hot(designs, vocab))


@functools.cache
def _trained(vocab: int, length: int) -> dict:
    with torch.random.fork_rng(devices=[]):  # the initialization must not move the suite's global RNG
        torch.manual_seed(0)
        model = MaskedDiffusion(TransformerDenoiser(vocab, length, dim=16, depth=1, heads=2, mlp_ratio=2),
                                vocab, length)
    # A corpus where token 0 is rare (10 %) and tokens repeat their left neighbour half the time: the
    # prior has structure, and a reward for token 0 has room to improve on it.
    g = gen(1)
    probs = torch.tensor([0.1] + [0.9 / (vocab - 1)] * (vocab - 1))
    x = torch.multinomial(probs, 512 * length, replacement=True, generator=g).view(512, length)
    copy = torch.rand(512, length, generator=g) < 0.5
    for i in range(1, length):
        x[:, i] = torch.where(copy[:, i], x[:, i - 1], x[:, i])
    pretrain(model, x, steps=40, batch_size=64, lr=3e-3, weight_decay=0.0, warmup=5, seed=0)
    return {k: v.clone() for k, v in model.state_dict().items()}


def tiny_model(sampler=8, vocab: int = V, length: int = L) -> MaskedDiffusion:
    """A tiny masked diffusion model pretrained for 40 steps (cached: each test gets a fresh copy)."""
    model = MaskedDiffusion(TransformerDenoiser(vocab, length, dim=16, depth=1, heads=2, mlp_ratio=2),
                            vocab, length, sampler=sampler)
    model.load_state_dict(_trained(vocab, length))
    return model.eval().requires_grad_(False)


def plain_mean(model: MaskedDiffusion, n: int = 2000, reward=count_zero) -> float:
    """Mean reward of plain pretrained samples (the bar every method must clear)."""
    return rewards_of(model.sample(n, generator=gen(123)), reward, model.vocab_size).mean().item()


def rows_that_unmask(model: MaskedDiffusion, n: int, generator: torch.Generator, **kwargs) -> int:
    """How many (sequence, step) pairs of ``model.sample(n, generator=…, **kwargs)`` unmask a position:
    the network calls that sampling makes. The trajectory draws the same designs from the same seed."""
    tr = model.sample(n, generator=generator, return_trajectory=True, **kwargs)
    return int((tr.states[1:] != tr.states[:-1]).any(-1).sum())
