"""Recomputing a sampled trajectory's per-step quantities under a model, with gradients.

The policy-gradient and weighted-likelihood fine-tuners sample trajectories without gradients, then
score each recorded step ``states[k] -> states[k+1]`` under the current weights: its policy log-prob
and its exact KL to the reference (Σ over masked positions of P(unmask)·KL, see
:mod:`mbo.diffusion.masked`). The unmask decisions are policy-free, so both need only the states and
the sampler that drew them; all steps of a trajectory go through the network in one batch, as many
trajectories together as :func:`trajectory_parts` allows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mbo.diffusion import masked
from mbo.diffusion.masked import MaskedDiffusion
from mbo.diffusion.policy import on_support
from mbo.diffusion.samplers import Sampler


def trajectory_parts(states: Tensor) -> list[tuple[slice, slice]]:
    """``(steps, trajectories)`` slices of ``states (S + 1, n, L)`` to score together
    (:func:`step_terms`): each part brings at most :data:`~mbo.diffusion.masked.PAIRS_PER_PASS`
    position pairs to the denoiser, and at least one step of one trajectory. A trajectory brings its S
    steps as rows, so whole trajectories in one pass grow as L³: PPO's 128 at L = 64 took 8 GiB with
    gradients, and past L ≈ 256 a single trajectory is more than a part."""
    steps, n, length = states.shape[0] - 1, states.shape[1], states.shape[2]
    step_parts = masked.sequence_parts(steps, length)  # one trajectory's steps, as rows
    if len(step_parts) <= 1:  # whole trajectories, as many as fit
        return [(slice(0, steps), part) for part in masked.sequence_parts(n, length, steps)]
    return [(part, slice(i, i + 1)) for i in range(n) for part in step_parts]


def step_terms(model: MaskedDiffusion, states: Tensor, ref: MaskedDiffusion | None = None,
               sampler: Sampler | None = None, steps: slice = slice(None),
               trajectories: slice = slice(None)) -> tuple[Tensor, Tensor | None]:
    """Per-step policy log-probs and (with ``ref``) exact KLs of a trajectory under ``model``.

    Args:
        model: the policy; gradients flow into its weights.
        states: LongTensor ``(S + 1, n, L)`` (``Trajectory.states``).
        ref: the KL reference (run without gradients), or None; with one, the policy is kept on
            its support (:func:`~mbo.diffusion.policy.on_support`), as the roll-ins were drawn.
        sampler: the sampler that drew the trajectory (for its unmask probabilities; needed with ref).
        steps, trajectories: score only these steps (``start`` and ``stop`` given) of these
            trajectories: a part of :func:`trajectory_parts`.

    Returns:
        ``(log_probs, kls)``, each ``(S, n)`` (the part's sizes): log p_θ(states[k+1] | states[k]) and
        KL(p_θ(·|states[k]) ‖ p_ref(·|states[k])); ``kls`` is None without ``ref``.
    """
    first = steps.start or 0
    states = states[first:(states.shape[0] - 1 if steps.stop is None else steps.stop) + 1, trajectories]
    s, n, length = states.shape[0] - 1, states.shape[1], states.shape[2]
    xt, xs = states[:-1].reshape(-1, length), states[1:].reshape(-1, length)
    inp = model.encode(xt)
    log_x0 = model.policy_log_probs(inp)
    if ref is not None:  # the policy the roll-ins drew from (MaskedDiffusion.sample with ref)
        with torch.no_grad():
            log_ref = ref.policy_log_probs(inp.to(next(ref.parameters()).dtype))
        log_x0 = on_support(log_x0, log_ref)
    masked = xt == model.mask_id
    unmasked = masked & (xs != model.mask_id)
    picked = log_x0.gather(-1, torch.where(unmasked, xs, 0)[..., None]).squeeze(-1)
    log_probs = (picked * unmasked).sum(-1).view(s, n)
    if ref is None:
        return log_probs, None
    per_step = masked.view(s, n, length)
    prob = torch.cat([_as_rows(sampler.unmask_prob(per_step[k], first + k, model.schedule), n, length,
                               xt.device) for k in range(s)])
    per_pos = (log_x0.exp() * (log_x0 - log_ref)).sum(-1)
    return log_probs, (prob * per_pos * masked).sum(-1).view(s, n)


def _as_rows(prob: float | Tensor, n: int, length: int, device: torch.device) -> Tensor:
    return prob if isinstance(prob, Tensor) else torch.full((n, length), float(prob), device=device)
