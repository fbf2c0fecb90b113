"""Sampling conditional designs, and the baselines CTRL is compared with.

- :func:`sample_classifier_guided`: the pretrained model with the same clean-x classifier applied at
  sampling time through a guidance hook (:func:`classifier_guidance`): each step's token
  distribution is tilted by γ·∇ log p̂(c | x̂_0) (first-order guidance on the predicted clean
  sequence; no training).
- :func:`sample_cfg`: a conditional model with classifier-free guidance weight w
  (log x̂ = (1 + w)·log x̂(·|c) − w·log x̂(·|∅)); w = 0 is plain conditional sampling.
- :func:`rejection_select`: exact rejection sampling of p_pre · p̂(c | x)^γ from a pool of pretrained
  samples (accept with probability p̂(c | x)^γ ≤ 1).
- :func:`ranked_draws`: a conditional model's distinct draws ranked by log p̂(c | x), the best kept (what
  ``mbo-run mode=ctrl`` writes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mbo.data.alphabet import one_hot
from mbo.designs import ranked, unique_designs
from mbo.diffusion import masked
from mbo.diffusion.masked import Guidance, MaskedDiffusion
from mbo.diffusion.samplers import Sampler
from mbo.guidance.gradient import reward_guidance


def classifier_guidance(diffusion: MaskedDiffusion, log_prob: Callable[[Tensor], Tensor],
                        gamma: float = 1.0) -> Guidance:
    """A :data:`~mbo.diffusion.masked.Guidance` hook tilting each step by γ·∇ log p̂(c | x̂_0).

    The generic reward-gradient hook (:func:`mbo.guidance.reward_guidance`) with r = log p̂(c | x)
    and strength γ: the token log-probs become ``log x̂_θ + γ·∂ log p̂(c | x̂_0)/∂x̂_0`` renormalized,
    with x̂_0 = exp(log x̂_θ(x_t)) (soft, carry-over applied); carried-over positions keep their token.
    ``diffusion`` is unused (kept for the signature).
    """
    return reward_guidance(log_prob, gamma)


def sample_classifier_guided(diffusion: MaskedDiffusion, log_prob: Callable[[Tensor], Tensor], n: int,
                             sampler: Sampler | int | str | None = None, gamma: float = 1.0,
                             generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """``n`` designs ``(n, L)`` from the pretrained model under :func:`classifier_guidance`.

    Args:
        diffusion: the pretrained (unconditional) model.
        log_prob: ``(B, L, V)`` soft one-hot -> ``(B,)`` log p̂(c | x) (differentiable).
    """
    return diffusion.sample(n, sampler=sampler, generator=generator, progress=progress,
                            guidance=classifier_guidance(diffusion, log_prob, gamma))


def sample_cfg(model: MaskedDiffusion, cond: Tensor, n: int, sampler: Sampler | int | str | None = None,
               weight: float = 0.0, generator: torch.Generator | None = None,
               progress: bool = False) -> Tensor:
    """Sample ``n`` designs from a conditional model under one condition ``cond`` LongTensor ``(F,)``.

    ``weight`` is the classifier-free guidance weight w (needs a model trained with null conditions):
    log x̂ = (1 + w)·log x̂(·|c) − w·log x̂(·|∅), renormalized.
    """
    rows = cond.to(model.device).expand(n, -1)
    if weight == 0.0:
        return model.sample(n, sampler=sampler, generator=generator, progress=progress, cond=rows)
    null = model.denoiser.null_condition.to(model.device)

    def guided(xt: Tensor, log_x0: Tensor, rows: Tensor) -> Tensor:
        # In parts, as the conditional pass before it (a hook gets every row that draws at once).
        inp = model.encode(xt)
        lu = torch.cat([model.policy_log_probs(inp[p], null.expand(p.stop - p.start, -1))
                        for p in masked.inference_parts(len(xt), model.length, xt.device)])
        return torch.log_softmax((1 + weight) * log_x0 - weight * lu, dim=-1)

    return model.sample(n, sampler=sampler, generator=generator, progress=progress, cond=rows,
                        guidance=guided)


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
    if log_accept.shape != pool.shape[:1]:
        raise ValueError(f"log_accept must be ({len(pool)},), one per pool row, "
                         f"got {tuple(log_accept.shape)}")
    if not 1 <= n <= len(pool):  # fewer rows than asked for would pass unnoticed
        raise ValueError(f"n must be between 1 and the pool's {len(pool)} rows, got {n}")
    u = torch.rand(log_accept.shape, generator=generator, device=log_accept.device)
    acc = torch.log(u) < log_accept
    accepted = int(acc.sum())
    idx = acc.nonzero().squeeze(1)[:n]
    if len(idx) < n:
        rest = (~acc).nonzero().squeeze(1)
        rest = rest[log_accept[rest].argsort(descending=True)[: n - len(idx)]]
        idx = torch.cat([idx, rest])
    return pool[idx.to(pool.device)], accepted


def ranked_draws(model: MaskedDiffusion, log_prob: Callable[[Tensor, Tensor], Tensor], code: Tensor, n: int,
                 oversample: int, sampler: Sampler | int | str | None = None,
                 generator: torch.Generator | None = None, ref: MaskedDiffusion | None = None
                 ) -> tuple[Tensor, int, int]:
    """Of ``oversample × n`` distinct draws of the conditional ``model`` for condition ``code (F,)``, the
    ``n`` that ``log_prob(one-hot (B, L, V), codes (B, F)) -> (B,)`` rates highest, best first: the
    model's own draws with ``oversample = 1`` (distinct), a top-n selection above it, as rejection
    sampling fills its shortfall from its pool.

    Returns:
        ``(designs, drawn, distinct)``: LongTensor ``(m, L)`` on CPU with ``m <= n``, the number of
        sequences sampled and of distinct ones found.
    """
    def draw(k: int) -> Tensor:
        return model.sample(k, sampler=sampler, generator=generator, ref=ref, cond=code.expand(k, -1))

    found, drawn = unique_designs(draw, n * oversample)
    with torch.no_grad():
        score = log_prob(one_hot(found, model.vocab_size).to(code.device), code.expand(len(found), -1)).cpu()
    return ranked(found, score)[0][:n], drawn, len(found)
