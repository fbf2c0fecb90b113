"""Sampling conditional designs, and the baselines CTRL is compared with.

- :func:`sample_classifier_guided`: the pretrained model with the same clean-x classifier applied at
  sampling time: each step's token distribution is tilted by γ·∇ log p̂(c | x̂_0) (first-order
  guidance on the predicted clean sequence; no training).
- :func:`sample_cfg`: a conditional model with classifier-free guidance weight w
  (log x̂ = (1 + w)·log x̂(·|c) − w·log x̂(·|∅)); w = 0 is plain conditional sampling.
- :func:`rejection_select`: exact rejection sampling of p_pre · p̂(c | x)^γ from a pool of pretrained
  samples (accept with probability p̂(c | x)^γ ≤ 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mbo.diffusion.masked import MaskedDiffusion, _gumbel


@torch.no_grad()
def _sample_with(diffusion: MaskedDiffusion, n: int, steps: int, generator: torch.Generator | None,
                 log_x0_fn: Callable[[Tensor], Tensor], progress: bool = False) -> Tensor:
    """Ancestral sampling where ``log_x0_fn(xt (n, L)) -> (n, L, V)`` replaces log x̂_θ(x_t)."""
    xt = torch.full((n, diffusion.length), diffusion.mask_id, dtype=torch.long, device=diffusion.device)
    for k in tqdm(range(steps, 0, -1), disable=not progress, desc="sampling", leave=False):
        t, s = k / steps, (k - 1) / steps
        log_x0 = log_x0_fn(xt)
        masked = xt == diffusion.mask_id
        unmask = masked & (torch.rand(xt.shape, device=xt.device, generator=generator)
                           < diffusion._unmask_prob(t, s))
        tokens = (log_x0 + _gumbel(log_x0.shape, xt.device, generator)).argmax(-1)
        xt = torch.where(unmask, tokens, xt)
    return xt


def sample_classifier_guided(diffusion: MaskedDiffusion, log_prob: Callable[[Tensor], Tensor], n: int,
                             steps: int = 32, gamma: float = 1.0,
                             generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """Classifier guidance with a classifier on clean sequences.

    At each step, with x̂_0 = x̂_θ(x_t) (soft, carry-over applied) the masked positions' token
    log-probs become ``log x̂_θ + γ·∂ log p̂(c | x̂_0)/∂x̂_0`` renormalized: the first-order Taylor
    estimate of p̂(c | x̂_0 with that token placed).

    Args:
        diffusion: the pretrained (unconditional) model.
        log_prob: ``(B, L, V)`` soft one-hot -> ``(B,)`` log p̂(c | x) (differentiable).

    Returns:
        LongTensor ``(n, L)``.
    """
    def guided(xt: Tensor) -> Tensor:
        log_x0 = diffusion.x0_log_probs(diffusion.encode(xt))
        with torch.enable_grad():
            x0_hat = log_x0.exp().requires_grad_(True)
            (grad,) = torch.autograd.grad(log_prob(x0_hat).sum(), x0_hat)
        return torch.log_softmax(log_x0 + gamma * grad, dim=-1)

    return _sample_with(diffusion, n, steps, generator, guided, progress)


def sample_cfg(model: MaskedDiffusion, cond: Tensor, n: int, steps: int = 32, weight: float = 0.0,
               generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """Sample ``n`` designs from a conditional model under one condition ``cond`` LongTensor ``(F,)``.

    ``weight`` is the classifier-free guidance weight w (needs a model trained with null conditions).
    """
    rows = cond.to(model.device).expand(n, -1)
    if weight == 0.0:
        return model.sample(n, steps=steps, generator=generator, progress=progress, cond=rows)
    null = model.denoiser.null_condition.to(model.device).expand(n, -1)

    def guided(xt: Tensor) -> Tensor:
        inp = model.encode(xt)
        lc, lu = model.x0_log_probs(inp, rows), model.x0_log_probs(inp, null)
        return torch.log_softmax((1 + weight) * lc - weight * lu, dim=-1)

    return _sample_with(model, n, steps, generator, guided, progress)


def rejection_select(pool: Tensor, log_accept: Tensor, n: int,
                     generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """Rejection sampling from a pool of pretrained samples.

    Args:
        pool: LongTensor ``(N, L)`` drawn from p_pre.
        log_accept: ``(N,)`` γ·log p̂(c | x) ≤ 0, the log acceptance probability.
        n: designs wanted.

    Returns:
        ``(designs, accepted)``: the first ``n`` accepted rows (exact draws from
        p_pre · p̂(c|x)^γ / Z); if fewer than ``n`` were accepted, the rest are filled with the
        rejected rows of highest acceptance probability (no longer exact; ``accepted`` says how many
        are), and ``accepted`` is the number of accepted rows in the whole pool.
    """
    u = torch.rand(log_accept.shape, generator=generator, device=log_accept.device)
    acc = torch.log(u) < log_accept
    accepted = int(acc.sum())
    idx = acc.nonzero().squeeze(1)[:n]
    if len(idx) < n:
        rest = (~acc).nonzero().squeeze(1)
        rest = rest[log_accept[rest].argsort(descending=True)[: n - len(idx)]]
        idx = torch.cat([idx, rest])
    return pool[idx.to(pool.device)], accepted
