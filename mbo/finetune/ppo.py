"""PPO / DDPO for masked diffusion: clipped policy gradients on the sampler's steps, exact KL penalty.

Maximizes J(θ) = E_θ[r(x_0)] − α·KL(p_θ ‖ p_pre) for a reward that needs no gradient. Each iteration
samples trajectories with the current weights (θ_old), then takes ``epochs`` gradient steps on

    −E[ Σ_k min(ρ_k·A, clip(ρ_k, 1 ± ε)·A) ] + E[ Σ_k KL_k(θ) ],

with ρ_k = p_θ(step k)/p_θ_old(step k) the ratio of each reverse step's policy probability (the
token draws; the unmask decisions are policy-free), A = (r − mean r)/α the advantage in units of α
(the reward is terminal, so every step of a trajectory shares it), and KL_k the exact per-step KL to
p_pre at the visited state, differentiated directly rather than through the likelihood ratio. Both
terms are in nats, so the fixed point is the target p* ∝ p_pre·exp(r/α).
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
def finetune_ppo(
    pretrained: nn.Module,
    reward: Callable[[Tensor], Tensor],
    *,
    alpha: float,
    iterations: int,
    batch_size: int,
    epochs: int,
    clip: float,
    lr: float,
    grad_clip: float,
    sampler: Sampler | int | str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[nn.Module, list[dict]]:
    """Fine-tune a copy of ``pretrained`` (a ``MaskedDiffusion``) with PPO towards p_pre·exp(r/α).

    The settings' defaults live in the ``finetune/ppo`` config group.

    Args:
        pretrained: p_pre; left unchanged.
        reward: one-hot ``(B, L, V)`` -> ``(B,)``; called without gradients (a black box is fine).
        alpha: the KL weight α (> 0), in the reward's units.
        iterations: rounds of ``batch_size`` fresh trajectories.
        epochs: gradient steps on each round's trajectories.
        clip: ε, the PPO ratio clip.
        lr, grad_clip: AdamW learning rate and gradient-norm clip.
        sampler: the sampler the model is trained under (default the model's own).
        seed: seeds the sampler noise.

    Returns:
        The fine-tuned model and a history, one dict per iteration: ``reward``, ``kl`` (mean
        trajectory KL to p_pre at sampling), ``clipped`` (fraction of step ratios outside 1 ± ε in the
        last epoch), ``loss``.
    """
    check_method_settings("finetune_ppo", {"alpha": alpha, "iterations": iterations, "batch_size": batch_size,
                                           "epochs": epochs, "clip": clip, "lr": lr, "grad_clip": grad_clip})
    reward = checked_reward(reward)
    ref = pretrained  # frozen for the call by @trains
    model = copy.deepcopy(pretrained).requires_grad_(True)
    sampler = get_sampler(sampler) if sampler is not None else model.sampler
    gen = torch.Generator(device=model.device).manual_seed(seed)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    history: list[dict] = []
    for it in progress_bar(range(iterations), desc="fine-tune (PPO)", progress=progress):
        model.eval()
        with torch.no_grad():
            traj = model.sample(batch_size, sampler=sampler, generator=gen, ref=ref, return_trajectory=True)
            r = reward(one_hot(traj.x0, model.vocab_size).to(model.device)).float()
            advantage = (r - r.mean()).double() / alpha
            # The same objective times 1 / scale, so that a vanishing α (1e-40) does not overflow
            # float32: past 1e4 per design the gradient is clipped to grad_clip in any case.
            scale = max(1.0, float(advantage.abs().max()) / 1e4)
            advantage = (advantage / scale).float()[None, :]  # (1, n): every step shares the terminal reward
            old = traj.log_probs
        model.train()
        parts = trajectory_parts(traj.states)
        for _ in range(epochs):
            opt.zero_grad(set_to_none=True)
            loss, ratios = 0.0, torch.empty_like(old)
            for steps, part in parts:
                log_probs, kls = step_terms(model, traj.states, ref, sampler, steps, part)
                ratio = (log_probs - old[steps, part]).exp()
                adv = advantage[:, part]
                surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
                # The loss sums over steps and means over trajectories: each part adds its share,
                # and its gradient.
                part_loss = (kls.sum() / scale - surrogate.sum()) / batch_size
                part_loss.backward()
                loss += part_loss.item() * scale
                ratios[steps, part] = ratio.detach()
            nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
        moved = (traj.states[1:] != traj.states[:-1]).any(-1)  # steps that drew a token
        clipped = ((ratios - 1).abs() > clip) & moved
        row = {"iteration": it, "reward": float(r.mean()), "kl": float(traj.kls.sum(0).mean()),
               "clipped": float(clipped.sum() / moved.sum().clamp_min(1)), "loss": loss}
        history.append(row)
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"fine-tuning diverged at iteration {it}: {row}")
    return model.eval().requires_grad_(False), history
