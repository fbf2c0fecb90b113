"""VIDD (arXiv 2507.00445): value-guided iterative distillation of the soft-optimal policy.

The policy that samples p* ∝ p_pre·exp(r/α) exactly takes each reverse step from the soft-optimal
step distribution

    p*(x_s | x_t) ∝ p_pre(x_s | x_t) · exp(v(x_s)/α),      v(x) = α·log E_pre[exp(r(x_0)/α) | x],

the same target SVDD steers towards at inference time. VIDD distills it into the model: each
iteration rolls in from the current model (off-policy states, no gradient through the sampler), and
at each visited state x_t, for the position the sampler unmasked there, builds the soft-optimal token
distribution by trying every token v at that position,

    q(v) ∝ p_pre(v | x_t) · exp(r(x̂_0(x_t[i ← v])) / α),

with x̂_0 the pretrained model's most likely completion, or with ``completion="mean"`` its posterior
mean, as the inference-time methods' lookahead (:mod:`mbo.guidance.values`); then it minimizes the
cross-entropy KL(q ‖ p_θ(· | x_t)) at that position. It needs no reward gradient, its targets are
fixed given the state (stable, off-policy), and its fixed point with exact values is the target.
Cost per iteration: ``batch_size`` roll-ins, and up to ``batch_size · states_per_trajectory · V`` reward
and network calls for the targets (only the tokens the prior's policy can draw are tried: with min-p
on Ehrlich about 20 of 32).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mbo.caller_state import trains
from mbo.data.alphabet import one_hot
from mbo.diffusion.masked import MaskedDiffusion, sequence_parts
from mbo.diffusion.policy import LOG_ZERO
from mbo.diffusion.samplers import Sampler, get_sampler
from mbo.guidance.base import checked_reward, x0_log_probs
from mbo.method_settings import check_method_settings
from mbo.progress import progress_bar
from mbo.seeding import dropout_seeded


@torch.no_grad()
def soft_optimal_tokens(pretrained: MaskedDiffusion, reward: Callable[..., Tensor], xt: Tensor,
                        position: Tensor, alpha: float, cond: Tensor | None = None,
                        completion: str = "argmax") -> Tensor:
    """The soft-optimal distribution of the token at ``position`` of each state, ``(B, V)``.

    Args:
        pretrained: p_pre (its log-probs are the prior of the step, its argmax the completion x̂_0).
        reward: one-hot ``(N, L, V)`` -> ``(N,)``, or ``(one-hot, cond (N, ...))`` -> ``(N,)`` with ``cond``.
        xt: LongTensor ``(B, L)`` (MASK = V), with ``xt[b, position[b]]`` masked.
        position: LongTensor ``(B,)``.
        alpha: α ≥ 0; α = 0 puts all mass on the token of highest value.
        cond: optional ``(B, ...)`` condition of each state (CTRL), passed to the reward only: the
            completion is the unconditional prior's, as the target p_pre·exp(r(·, c)/α) is.
        completion: x̂_0 at the still-masked positions: ``"argmax"``, the prior's most likely token, or
            ``"mean"``, its posterior mean (soft one-hots; a reward that reads tokens takes their argmax).
    """
    if completion not in ("argmax", "mean"):
        raise ValueError(f"soft_optimal_tokens: completion must be 'argmax' or 'mean', got {completion!r}")
    b, v = xt.shape[0], pretrained.vocab_size
    rows = torch.arange(b, device=xt.device)
    prior = x0_log_probs(pretrained, xt, None)[rows, position]  # (B, V)
    # Only tokens the prior's policy can draw (min-p, constraints) are tried: the target is p_pre·exp(·),
    # zero wherever p_pre is, whatever the reward says there (and α = 0 must not pick such a token).
    row, token = (prior > LOG_ZERO / 2).nonzero(as_tuple=True)
    cand = xt[row].clone()  # (K, L): each state with one of its drawable tokens placed
    cand[torch.arange(len(row), device=xt.device), position[row]] = token
    # Carry-over: at unmasked positions the prediction is the token itself, so both completions keep them.
    log_x0 = x0_log_probs(pretrained, cand, None)  # (K, L, V)
    x = log_x0.exp() if completion == "mean" else one_hot(log_x0.argmax(-1), v).to(xt.device)
    value = torch.full((b, v), -math.inf, dtype=torch.float32, device=xt.device)  # any default dtype
    value[row, token] = (reward(x) if cond is None else reward(x, cond[row])).float()
    if alpha == 0:
        return nn.functional.one_hot(value.argmax(-1), v).float()
    # Relative to each row's best value (<= 0) and in float64, so a tiny α (value/α past float32's
    # range; 1e-300 is 0 in float32) tends to the argmax instead of inf − inf = NaN targets.
    best = value.amax(-1, keepdim=True)
    tilt = (value.double() - best.double()) / float(alpha)
    return torch.softmax(prior.double() + tilt, dim=-1).float()


@trains(frozen_args=("pretrained",))
@dropout_seeded
def finetune_vidd(
    pretrained: nn.Module,
    reward: Callable[..., Tensor],
    *,
    alpha: float,
    iterations: int,
    batch_size: int,
    states_per_trajectory: int,
    lr: float,
    grad_clip: float,
    sampler: Sampler | int | str | None = None,
    seed: int = 0,
    progress: bool = False,
    condition_sampler: Callable[[int, torch.Generator], Tensor] | None = None,
    completion: str = "argmax",
) -> tuple[nn.Module, list[dict]]:
    """Fine-tune a copy of ``pretrained`` (a ``MaskedDiffusion``) by VIDD towards p_pre·exp(r/α).

    The settings' defaults live in the ``finetune/vidd`` config group.

    Args:
        pretrained: p_pre; left unchanged.
        reward: one-hot ``(B, L, V)`` -> ``(B,)``; called without gradients (a black box is fine).
        alpha: the KL weight α ≥ 0, in the reward's units (0: distill the greedy soft-optimal step).
        iterations: roll-in rounds of ``batch_size`` trajectories from the current model.
        states_per_trajectory: visited states per trajectory that get a target (drawn at random).
        lr, grad_clip: AdamW learning rate and gradient-norm clip.
        sampler: the sampler of the roll-ins and of later designs (default the model's own).
        seed: seeds the roll-ins and the choice of states.
        condition_sampler: for a conditional model (``mbo.ctrl``): maps ``(batch_size, generator)`` to
            the conditions ``(B, ...)`` of each roll-in; the model then learns p_pre·exp(r(·, c)/α) for
            every c, with ``reward(x, cond)``. The KL and the targets' prior are ``pretrained``'s,
            run without the condition.
        completion: how a target's value completes the masked positions (see
            :func:`soft_optimal_tokens`).

    Returns:
        The fine-tuned model and a history, one dict per iteration: ``reward`` (mean r of the
        roll-ins' samples), ``kl`` (their exact trajectory KL to ``pretrained``, nats), ``loss``
        (cross-entropy to the targets), ``target_entropy``.
    """
    check_method_settings("finetune_vidd", {
        "alpha": alpha, "iterations": iterations, "batch_size": batch_size, "lr": lr, "grad_clip": grad_clip,
        "states_per_trajectory": states_per_trajectory, "completion": completion})
    reward = checked_reward(reward)
    ref = pretrained  # frozen for the call by @trains
    model = copy.deepcopy(pretrained).requires_grad_(True)
    sampler = get_sampler(sampler) if sampler is not None else model.sampler
    gen = torch.Generator(device=model.device).manual_seed(seed)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    history: list[dict] = []
    for it in progress_bar(range(iterations), desc="fine-tune (VIDD)", progress=progress):
        model.eval()
        with torch.no_grad():
            cond = None if condition_sampler is None else condition_sampler(batch_size, gen).to(model.device)
            traj = model.sample(batch_size, sampler=sampler, generator=gen, ref=ref, return_trajectory=True,
                                cond=cond)
            x0 = one_hot(traj.x0, model.vocab_size).to(model.device)
            r = (reward(x0) if cond is None else reward(x0, cond)).float()
            xt, position, which = _visited(traj.states, states_per_trajectory, gen)
            state_cond = None if cond is None else cond[which]
            target = soft_optimal_tokens(ref, reward, xt, position, alpha, state_cond, completion)
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        for part in sequence_parts(len(xt), model.length):  # the loss is a mean: each part adds its share
            cond_part = None if state_cond is None else state_cond[part]
            log_x0 = model.policy_log_probs(model.encode(xt[part]), cond_part)
            picked = log_x0[torch.arange(len(log_x0)), position[part]]
            part_loss = -(target[part] * picked).sum(-1).sum() / len(xt)
            part_loss.backward()
            loss += part_loss.item()
        nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        entropy = -(target * target.clamp_min(1e-30).log()).sum(-1).mean()
        row = {"iteration": it, "reward": float(r.mean()), "kl": float(traj.kls.sum(0).mean()),
               "loss": loss, "target_entropy": float(entropy)}
        history.append(row)
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"fine-tuning diverged at iteration {it}: {row}")
    return model.eval().requires_grad_(False), history


def _visited(states: Tensor, per_traj: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``per_traj`` random visited states of each trajectory that unmask something, for each one a
    position the sampler unmasked there, and its trajectory: ``(xt (B, L), position (B,), which (B,))``."""
    steps, n = states.shape[0] - 1, states.shape[1]
    moved = (states[1:] != states[:-1]).any(-1)  # (S, n): steps that placed a token
    score = torch.rand(steps, n, generator=gen, device=states.device).masked_fill(~moved, -1.0)
    ks = score.topk(min(per_traj, steps), dim=0).indices  # (m, n) steps, best-scored first
    cols = torch.arange(n, device=states.device).expand_as(ks)
    xt, xs = states[ks, cols], states[ks + 1, cols]  # (m, n, L)
    placed = (xt != xs)
    pick = torch.rand(placed.shape, generator=gen, device=states.device).masked_fill(~placed, -1.0)
    position = pick.argmax(-1)
    keep = placed.any(-1)
    return xt[keep], position[keep], cols[keep]
