"""Iterative refinement (after arXiv 2502.14944): re-mask part of each design, re-denoise it with SVDD,
keep whichever of old and new scores higher.

One pass of a reverse process decides early tokens before later ones are known; refinement goes back.
Each round re-masks a random set of ``remask_fraction · L`` positions of every design (the rest stay as
context), completes them with SVDD-PM steps from that partly masked state
(:func:`~mbo.guidance.svdd.svdd_denoise`; the pretrained model's conditionals given the kept tokens),
and keeps the new design only where its reward is higher, so no design ever gets worse. The re-masked
positions are redrawn from the pretrained model's conditional, so designs stay near its support.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mbo.diffusion.masked import MaskedDiffusion
from mbo.diffusion.samplers import Sampler
from mbo.guidance.base import (
    AlignmentResult,
    CallCounter,
    Reward,
    check_inputs,
    resolve_sampler,
    x0_log_probs,
)
from mbo.guidance.svdd import lookahead_evaluator, svdd_denoise
from mbo.guidance.values import predicted_value
from mbo.method_settings import check_method_settings
from mbo.progress import progress_bar


@torch.no_grad()
def iterative_refinement(diffusion: MaskedDiffusion, reward: Reward, n: int, *, rounds: int,
                         remask_fraction: float, candidates: int, alpha: float, start: Tensor | None = None,
                         sampler: Sampler | int | str | None = None, generator: torch.Generator | None = None,
                         batch_size: int | None = None, progress: bool = False) -> AlignmentResult:
    """Refine n designs for ``rounds`` rounds of re-mask, SVDD re-denoise, keep the better.

    Args:
        diffusion: the pretrained model (unchanged).
        reward: float one-hot ``(B, L, V)`` -> ``(B,)``; finite, need not be differentiable.
        n: designs.
        rounds: R, refinement rounds.
        remask_fraction: ρ in (0, 1]; each round re-masks m = max(1, round(ρ·L)) positions per design,
            chosen uniformly without replacement.
        candidates, alpha: M and the selection temperature of the SVDD steps (:func:`svdd_pm`).
        start: LongTensor ``(n, L)`` of designs to refine (e.g. another method's output); None draws
            n pretrained samples.
        sampler, generator, batch_size, progress: as in :func:`~mbo.guidance.svdd.svdd_pm`; the SVDD
            steps run the sampler from its first step and stop once nothing is masked.

    Returns:
        :class:`~mbo.guidance.base.AlignmentResult` with the designs' exact rewards; ``info`` has
        ``accepted`` (fraction of design-rounds whose new design replaced the old).

    Budget (S = the sampler's steps): reward calls n + R·n·(1 + M·m); network calls
    R·n·(1 + M·(m − 1)), plus ≤ n·S for the start when ``start`` is None. Exact for FirstHittingSampler
    (m steps a round); with a grid, at most the same with m replaced by S.
    """
    where = "iterative_refinement"
    n = check_inputs(diffusion, n, batch_size, where)
    check_method_settings(where, {"rounds": rounds, "candidates": candidates, "alpha": alpha,
                                  "remask_fraction": remask_fraction})
    m, alpha, rho = int(candidates), float(alpha), float(remask_fraction)
    sampler = resolve_sampler(diffusion, sampler)
    length, device = diffusion.length, diffusion.device
    if start is not None:
        if not isinstance(start, Tensor) or start.dtype != torch.long or start.shape != (n, length):
            got = f"{start.dtype} {tuple(start.shape)}" if isinstance(start, Tensor) else type(start).__name__
            raise ValueError(f"{where}: start must be a LongTensor ({n}, {length}), got {got}")
        if bool(((start < 0) | (start >= diffusion.vocab_size)).any()):
            raise ValueError(f"{where}: start has tokens outside [0, {diffusion.vocab_size - 1}]")
    k = max(1, round(rho * length))
    with CallCounter(diffusion, reward, batch_size) as counter:
        designs = (diffusion.sample(n, sampler=sampler, generator=generator) if start is None
                   else start.to(device))
        rewards = counter.score(designs)
        evaluate = lookahead_evaluator(diffusion, counter, batch_size)
        accepted = 0
        for _ in progress_bar(range(rounds), desc="refinement", progress=progress, leave=False):
            # k positions per design, uniformly without replacement: the k smallest of L uniforms.
            ranks = torch.rand((n, length), dtype=torch.float32, device=device,
                               generator=generator).argsort(-1).argsort(-1)
            xt = torch.where(ranks < k, diffusion.mask_id, designs)
            log_x0 = x0_log_probs(diffusion, xt, batch_size)
            value = predicted_value(counter, log_x0)
            new, new_rewards = svdd_denoise(diffusion, xt, log_x0, value, candidates=m, alpha=alpha,
                                            sampler=sampler, evaluate=evaluate, generator=generator,
                                            batch_size=batch_size)
            better = new_rewards > rewards
            designs = torch.where(better[:, None], new, designs)
            rewards = torch.where(better, new_rewards, rewards)
            accepted += int(better.sum())
        return counter.result(designs, rewards, accepted=accepted / (n * rounds))
