"""Best-of-N: draw N pretrained samples per design and keep the one with the highest reward.

The simplest inference-time alignment and the baseline every other method must beat at the same
number of reward calls. Each design is the best of its own N samples (not the top n of one pool), so
the n designs are independent draws from the best-of-N distribution, whose KL to the pretrained model
is at most log N − (N − 1)/N.
"""

from __future__ import annotations

import torch

from mbo.diffusion.masked import MaskedDiffusion
from mbo.diffusion.samplers import Sampler
from mbo.guidance.base import AlignmentResult, CallCounter, Reward, check_inputs, resolve_sampler
from mbo.method_settings import check_method_settings


@torch.no_grad()
def best_of_n(diffusion: MaskedDiffusion, reward: Reward, n: int, *, num_samples: int,
              sampler: Sampler | int | str | None = None, generator: torch.Generator | None = None,
              batch_size: int | None = None, progress: bool = False) -> AlignmentResult:
    """n designs, each the highest-reward of ``num_samples`` pretrained samples (ties: the first).

    Args:
        diffusion: the pretrained model (unchanged).
        reward: float one-hot ``(B, L, V)`` -> ``(B,)``; finite, need not be differentiable.
        n: designs.
        num_samples: N, pretrained samples per design (N = 1: plain pretrained sampling).
        sampler, generator, progress: as in :func:`~mbo.guidance.svdd.svdd_pm`.
        batch_size: at most this many samples per sampler / reward call (None: all n·N at once);
            bounds memory, changes which draws land where but not their distribution.

    Returns:
        :class:`~mbo.guidance.base.AlignmentResult` with the designs' rewards.

    Budget (S = the sampler's steps): reward calls n·N; network calls ≤ n·N·S (a step skips the
    samples that unmask nothing; = with the first-hitting sampler).
    """
    where = "best_of_n"
    n = check_inputs(diffusion, n, batch_size, where)
    check_method_settings(where, {"num_samples": num_samples})
    big_n = int(num_samples)
    sampler = resolve_sampler(diffusion, sampler)
    total = n * big_n
    size = batch_size or total
    with CallCounter(diffusion, reward, batch_size) as counter:
        # Sample i belongs to design i // N: the pool is (n, N) in row-major order.
        pool = torch.cat([diffusion.sample(min(size, total - lo), sampler=sampler, generator=generator,
                                           progress=progress)
                          for lo in range(0, total, size)])
        scores = counter.score(pool).view(n, big_n)
        best = scores.argmax(-1)
        rows = torch.arange(n, device=pool.device) * big_n + best
        return counter.result(pool[rows], scores[torch.arange(n, device=pool.device), best])
