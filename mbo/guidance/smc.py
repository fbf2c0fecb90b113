"""Sequential Monte Carlo guidance (twisted SMC; Uehara et al.'s tutorial, arXiv 2501.09685, §SMC).

Each design comes from its own population of K particles that all start at all-MASK. A step moves
every particle with the pretrained step (the proposal), multiplies its weight by
exp((v(x_{t−1}) − v(x_t)) / α) with the lookahead value v = r(x̂_0) of SVDD-PM
(:func:`~mbo.guidance.values.lookahead`), and resamples the population when its effective sample size
falls below ``ess_threshold · K``. At t = 0 the value is the reward itself, so the weights telescope to
exp(r(x_0)/α) divided by the start's value (the same for every particle): the final weighted
population targets p*(x) ∝ p_pre(x)·exp(r(x)/α) exactly, and the design drawn from it (∝ weight) is a
draw from p* as K grows (consistent for any value estimate; a better one needs fewer particles).
K = 1 is plain pretrained sampling.
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
    all_masked,
    check_inputs,
    gumbel,
    resolve_sampler,
    x0_log_probs,
)
from mbo.guidance.values import lookahead, predicted_value
from mbo.method_settings import CHOICES, check_method_settings
from mbo.progress import progress_bar

RESAMPLING = CHOICES["resampling"]


def effective_sample_size(log_w: Tensor) -> Tensor:
    """(Σw)² / Σw² per row of log-weights ``(n, K)``: ``(n,)`` between 1 and K."""
    return torch.exp(2 * torch.logsumexp(log_w, -1) - torch.logsumexp(2 * log_w, -1))


def resample(log_w: Tensor, method: str, generator: torch.Generator | None = None) -> Tensor:
    """Ancestor indices ``(n, K)`` drawn ∝ the weights of each row of ``log_w (n, K)``.

    ``"systematic"``: one uniform per row, K evenly spaced points through the weights' CDF (lower
    variance); ``"multinomial"``: K independent draws per row.
    """
    w = torch.softmax(log_w, -1)
    n, k = w.shape
    if method == "multinomial":
        return torch.multinomial(w, k, replacement=True, generator=generator)
    if method != "systematic":
        raise ValueError(f"resampling must be one of {RESAMPLING}, got {method!r}")
    u = torch.rand((n, 1), dtype=torch.float32, device=w.device, generator=generator)
    points = (u + torch.arange(k, device=w.device)) / k
    return torch.searchsorted(w.cumsum(-1), points).clamp_max(k - 1)


@torch.no_grad()
def smc(diffusion: MaskedDiffusion, reward: Reward, n: int, *, particles: int, alpha: float,
        ess_threshold: float, resampling: str, sampler: Sampler | int | str | None = None,
        generator: torch.Generator | None = None, batch_size: int | None = None,
        progress: bool = False) -> AlignmentResult:
    """n designs, each drawn from the final weighted population of its own K-particle SMC run.

    All n·K particles move as one batch: state ``(n·K, L)``, log-weights ``(n, K)``.

    Args:
        diffusion: the pretrained model (unchanged).
        reward: float one-hot ``(B, L, V)`` -> ``(B,)``; finite, need not be differentiable.
        n: designs (= independent populations).
        particles: K per population.
        alpha: temperature of the target p* ∝ p_pre·exp(r/α), in the reward's units (> 0).
        ess_threshold: resample a population when its ESS < ess_threshold·K (in [0, 1]; 0: never).
        resampling: ``"systematic"`` or ``"multinomial"``.
        sampler, generator, batch_size, progress: as in :func:`~mbo.guidance.svdd.svdd_pm`.

    Returns:
        :class:`~mbo.guidance.base.AlignmentResult` with the designs' exact rewards; ``info`` has
        ``resample_rate`` (fraction of population-steps that resampled) and ``final_ess`` (mean ESS
        of the final populations, 1..K).

    Budget (S = the sampler's steps; FirstHittingSampler: S = L, exact): reward calls
    ≤ 1 + n·K·S; network calls ≤ 1 + n·K·(S − 1), as SVDD-PM with M = K.
    """
    where = "smc"
    n = check_inputs(diffusion, n, batch_size, where)
    check_method_settings(where, {"particles": particles, "alpha": alpha, "ess_threshold": ess_threshold,
                                  "resampling": resampling})
    k, alpha = int(particles), float(alpha)
    sampler = resolve_sampler(diffusion, sampler)
    steps = sampler.num_steps(diffusion.length)
    device = diffusion.device
    with CallCounter(diffusion, reward, batch_size) as counter:
        # Every particle starts at all-MASK: one network call and one reward call for all of them.
        x1 = all_masked(diffusion, 1)
        log_x0 = x0_log_probs(diffusion, x1, batch_size).expand(n * k, -1, -1)
        value = predicted_value(counter, log_x0[:1]).expand(n * k)
        xt = x1.expand(n * k, -1)
        # The weights' log is gain/α with gain = Σ Δv since the last resampling, kept in float64 and
        # taken relative to the population's best (weights): a tiny α then tends to the greedy limit
        # instead of overflowing (log-weights of ±inf, NaN weights, a final draw of the first particle).
        gain = torch.zeros(n, k, device=device, dtype=torch.float64)

        def weights() -> Tensor:
            return (gain - gain.amax(-1, keepdim=True)) / alpha

        base = (torch.arange(n, device=device) * k)[:, None]
        resampled = 0
        for step in progress_bar(range(steps), desc="SMC", progress=progress, leave=False):
            unmask, _ = sampler.unmask(xt == diffusion.mask_id, step, diffusion.schedule, generator)
            xs = diffusion.step(xt, log_x0, unmask, generator=generator).xs
            log_x0, new_value = lookahead(diffusion, counter, xs, unmask.any(-1), log_x0, value,
                                          batch_size)
            gain = gain + (new_value.double() - value.double()).view(n, k)
            xt, value = xs, new_value
            if step == steps - 1:
                break  # the final draw below uses the weights themselves
            log_w = weights()
            need = effective_sample_size(log_w) < ess_threshold * k
            if bool(need.any()):
                keep = torch.arange(k, device=device).expand(n, k)
                idx = (base + torch.where(need[:, None], resample(log_w, resampling, generator), keep))
                idx = idx.reshape(-1)
                xt, log_x0, value = xt[idx], log_x0[idx], value[idx]
                gain = torch.where(need[:, None], 0.0, gain)
                resampled += int(need.sum())
        if bool((xt == diffusion.mask_id).any()):
            raise RuntimeError(f"{where}: the sampler left masked positions after {steps} steps")
        log_w = weights()
        pick = (base[:, 0] + (log_w + gumbel(log_w.shape, device, generator).double()).argmax(-1))
        return counter.result(xt[pick], value[pick], resample_rate=resampled / max(n * (steps - 1), 1),
                              final_ess=effective_sample_size(log_w).mean().item())
