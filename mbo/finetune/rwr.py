"""Reward-weighted maximum likelihood on trajectories: sample → weight by the target → fit.

Each iteration samples trajectories τ from the current model p_θ, weights each by

    w(τ) ∝ p_pre(τ) · exp(r(x_0)/α) / p_θ(τ)        (self-normalized over the batch),

i.e. the importance weight of the path target p*(τ) ∝ p_pre(τ)·exp(r/α) (whose clean marginal is
p*(x) ∝ p_pre(x)·exp(r(x)/α)), and takes gradient steps on the weighted path log-likelihood
Σ_τ w(τ) Σ_k log p_θ(τ_k+1 | τ_k). Its fixed point is p_θ = p*, so unlike plain reward-weighted
regression (w ∝ exp(r/α) alone, which sharpens without bound as it iterates) it needs no KL term and
no reward gradient: the reward may be a black box. Its weakness is the importance weights: far from
the target the effective sample size is small, which the history records (``ess``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mbo.caller_state import trains
from mbo.data.alphabet import one_hot
from mbo.diffusion.samplers import Sampler, get_sampler
from mbo.finetune.trajectories import step_terms, trajectory_parts
from mbo.guidance.base import checked_reward
from mbo.method_settings import check_method_settings
from mbo.progress import progress_bar
from mbo.seeding import dropout_seeded


@trains(frozen_args=("pretrained",))
@dropout_seeded
def finetune_rwr(
    pretrained: nn.Module,
    reward: Callable[[Tensor], Tensor],
    *,
    alpha: float,
    iterations: int,
    batch_size: int,
    epochs: int,
    lr: float,
    grad_clip: float,
    sampler: Sampler | int | str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[nn.Module, list[dict]]:
    """Fine-tune a copy of ``pretrained`` (a ``MaskedDiffusion``) towards p_pre·exp(r/α).

    The settings' defaults live in the ``finetune/rwr`` config group.

    Args:
        pretrained: p_pre; left unchanged.
        reward: one-hot ``(B, L, V)`` -> ``(B,)``; called without gradients (a black box is fine).
        alpha: the KL weight α (> 0), in the reward's units.
        iterations: sample-weight-fit rounds of ``batch_size`` trajectories each.
        epochs: gradient steps on each round's weighted trajectories.
        lr, grad_clip: AdamW learning rate and gradient-norm clip.
        sampler: the sampler the model is trained under and designs are drawn with (default the
            model's own).
        seed: seeds the sampler noise.

    Returns:
        The fine-tuned model and a history, one dict per iteration: ``reward`` (mean r of the round's
        samples), ``kl`` (mean trajectory KL to p_pre), ``ess`` (effective sample size of the weights,
        1 .. batch_size), ``loss``.
    """
    check_method_settings("finetune_rwr", {"alpha": alpha, "iterations": iterations, "batch_size": batch_size,
                                           "epochs": epochs, "lr": lr, "grad_clip": grad_clip})
    reward = checked_reward(reward)
    ref = pretrained  # frozen for the call by @trains
    model = copy.deepcopy(pretrained).requires_grad_(True)
    sampler = get_sampler(sampler) if sampler is not None else model.sampler
    gen = torch.Generator(device=model.device).manual_seed(seed)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    history: list[dict] = []
    for it in progress_bar(range(iterations), desc="fine-tune (RWR)", progress=progress):
        model.eval()
        with torch.no_grad():
            traj = model.sample(batch_size, sampler=sampler, generator=gen, ref=ref, return_trajectory=True)
            r = reward(one_hot(traj.x0, model.vocab_size).to(model.device)).double()
            parts = trajectory_parts(traj.states)
            ref_lp = torch.empty_like(traj.log_probs)
            for steps, part in parts:
                ref_lp[steps, part] = step_terms(ref, traj.states, steps=steps, trajectories=part)[0]
            log_w = r / alpha + (ref_lp.double() - traj.log_probs.double()).sum(0)
            w = torch.softmax(log_w, 0).float()
        model.train()
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            for steps, part in parts:  # the loss sums over steps and trajectories: each part adds its own
                log_probs, _ = step_terms(model, traj.states, steps=steps, trajectories=part)
                part_loss = -(w[part] * log_probs).sum()
                part_loss.backward()
                loss += part_loss.item()
            nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
        row = {"iteration": it, "reward": float(r.mean()), "kl": float(traj.kls.sum(0).mean()),
               "ess": float(1.0 / (w.double() ** 2).sum()), "loss": loss}
        history.append(row)
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"fine-tuning diverged at iteration {it}: {row}")
    return model.eval().requires_grad_(False), history
