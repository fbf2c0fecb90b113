"""How far a fine-tuned model is from its target: the gap log Z − J/α, in nats.

Every fine-tuner here aims at p*(x) ∝ p_pre(x)·exp(r(x)/α), the maximizer of
J(θ) = E_θ[r(x_0)] − α·KL(p_θ ‖ p_pre). For any θ, J/α ≤ log Z with Z = E_pre[exp(r/α)], and

    log Z − J(θ)/α = KL(p_θ ‖ p*)

(with the trajectory KL of the sampler, which bounds the KL of the samples), so the gap is 0 exactly
at the target and "did it converge" is a number. The KL is computed exactly per reverse step
(``MaskedDiffusion.sample(ref=...)``) and E_θ[r] from the model's samples. Z is an expectation under
p_pre that small α makes hard to estimate from p_pre's own samples (the target sits where p_pre rarely
goes), so :func:`target_gap` estimates it by importance sampling over trajectories from the mixture
½·p_pre + ½·p_θ, whose θ half lands where the target is (path densities of both models are exact).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from mbo.data.alphabet import one_hot
from mbo.diffusion.masked import MaskedDiffusion
from mbo.diffusion.samplers import Sampler
from mbo.finetune.trajectories import step_terms, trajectory_parts


@torch.no_grad()
def log_partition(pretrained: MaskedDiffusion, reward: Callable[[Tensor], Tensor], alpha: float,
                  n: int = 4096, sampler: Sampler | int | str | None = None,
                  generator: torch.Generator | None = None, batch: int = 1024) -> float:
    """log Z = log E_pre[exp(r(x)/α)] from ``n`` pretrained samples (log-mean-exp, float64)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 for a partition function, got {alpha}")
    vals = []
    for start in range(0, n, batch):
        x = pretrained.sample(min(batch, n - start), sampler=sampler, generator=generator)
        vals.append(reward(one_hot(x, pretrained.vocab_size)).double().cpu() / alpha)
    v = torch.cat(vals)
    return float(torch.logsumexp(v, 0) - math.log(len(v)))


def _path_log_prob(model: MaskedDiffusion, states: Tensor) -> Tensor:
    """log p(τ) ``(n,)`` (float64) of trajectories ``states`` ``(S + 1, n, L)``, a few at a time."""
    out = torch.zeros(states.shape[1], dtype=torch.float64, device=states.device)
    for steps, part in trajectory_parts(states):
        out[part] += step_terms(model, states, steps=steps, trajectories=part)[0].sum(0).double()
    return out


@torch.no_grad()
def mixture_log_partition(model: MaskedDiffusion, pretrained: MaskedDiffusion,
                          reward: Callable[[Tensor], Tensor], alpha: float, n: int = 1024,
                          sampler: Sampler | int | str | None = None,
                          generator: torch.Generator | None = None) -> float:
    """log Z by importance sampling over trajectories from ½·p_pre + ½·p_θ (``n`` from each):
    Z = E_q[p_pre(τ)·exp(r/α) / q(τ)] with q the mixture; unbiased for Z (log: slightly low)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 for a partition function, got {alpha}")
    log_w = []
    for proposal in (pretrained, model):
        traj = proposal.sample(n, sampler=sampler, generator=generator, return_trajectory=True)
        log_pre, log_theta = _path_log_prob(pretrained, traj.states), _path_log_prob(model, traj.states)
        log_q = torch.logaddexp(log_pre, log_theta) - math.log(2)
        r = reward(one_hot(traj.x0, model.vocab_size)).double()
        log_w.append(log_pre + r / alpha - log_q)
    w = torch.cat(log_w).cpu()
    return float(torch.logsumexp(w, 0) - math.log(len(w)))


@torch.no_grad()
def target_gap(model: MaskedDiffusion, pretrained: MaskedDiffusion, reward: Callable[[Tensor], Tensor],
               alpha: float, log_z: float | None = None, n: int = 1024,
               sampler: Sampler | int | str | None = None,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """The fine-tuning objective of ``model`` against its maximum, all in nats (reward / α).

    Args:
        model: the fine-tuned model; ``pretrained``: p_pre.
        reward: ``(N, L, V)`` one-hot -> ``(N,)``, the reward the model was tuned on (as the
            fine-tuner saw it, e.g. a ``ScaledReward``).
        alpha: the KL weight α it was tuned with.
        log_z: a precomputed log Z (default: :func:`mixture_log_partition` with ``n`` trajectories of
            each model).
        n: trajectories of ``model`` to estimate E[r] and the KL from.

    Returns:
        ``objective`` (J/α), ``reward`` (E_θ[r]), ``kl`` (mean trajectory KL to p_pre), ``log_z``,
        ``gap`` (log Z − J/α ≥ 0 up to estimation error).
    """
    if log_z is None:
        log_z = mixture_log_partition(model, pretrained, reward, alpha, n=n, sampler=sampler,
                                      generator=generator)
    traj = model.sample(n, sampler=sampler, generator=generator, ref=pretrained, return_trajectory=True)
    r = reward(one_hot(traj.x0, model.vocab_size)).double().cpu()
    kl = traj.kls.sum(0).double().cpu()
    objective = float((r / alpha - kl).mean())
    return {"objective": objective, "reward": float(r.mean()), "kl": float(kl.mean()), "log_z": log_z,
            "gap": log_z - objective}
