"""Direct reward backpropagation with an exact KL leash to the pretrained model.

Minimizes  −E[r(x0)] + α·E[Σ_t KL_t]  over samples drawn from the fine-tuned model itself, with the
token choice relaxed by Gumbel-softmax and gradients truncated to the last K sampler steps
(BRAID / DRAKES style). ``α`` sets how far the model may drift from the pretrained manifold:
the optimum is p*(x) ∝ p_pre(x)·exp(r(x)/α).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mbo.caller_state import trains
from mbo.diffusion.masked import sequence_parts
from mbo.diffusion.samplers import Sampler
from mbo.guidance.base import checked_reward
from mbo.method_settings import check_method_settings
from mbo.progress import progress_bar
from mbo.seeding import dropout_seeded


@trains(frozen_args=("pretrained",))
@dropout_seeded
def finetune_backprop(
    pretrained: nn.Module,
    reward: Callable[[Tensor], Tensor],
    *,
    iterations: int,
    batch_size: int,
    alpha: float,
    sampler: Sampler | int | str | None,
    backprop_steps: int,
    tau: float,
    hard: bool,
    lr: float,
    grad_clip: float,
    kl_budget: float | None = None,
    seed: int = 0,
    progress: bool = False,
    condition_sampler: Callable[[int, torch.Generator], Tensor] | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Fine-tune a copy of ``pretrained`` (a ``MaskedDiffusion``) to maximize ``reward`` with a KL leash.

    The settings' defaults live in the ``finetune/backprop`` config group (``mbo.config``).

    Args:
        pretrained: the reference model; left unchanged and frozen.
        reward: maps float (soft) one-hot ``(B, L, V)`` to ``(B,)``, differentiable. If it has a
            ``components(x) -> (mean, g)`` method (conservative rewards do), r̂ and ĝ are logged too.
        iterations: optimizer steps; ``batch_size`` samples each.
        alpha: KL weight α.
        sampler: which positions each sampler step unmasks (a ``Sampler``, a number of grid steps,
            or ``"first_hitting"``); None = the model's own.
        backprop_steps: K, the last sampler steps gradients flow through (truncated backprop).
        tau: Gumbel-softmax temperature; ``hard`` uses straight-through exact one-hots.
        lr: AdamW learning rate; ``grad_clip`` the max gradient norm.
        kl_budget: stop early once the batch-mean trajectory KL exceeds this (nats); None = never.
        seed: seeds the sampler noise.
        progress: show a tqdm bar.
        condition_sampler: for a conditional model (``mbo.ctrl``): maps ``(batch_size, generator)``
            to a condition tensor ``(B, ...)``; each batch is then sampled under its conditions and
            scored with ``reward(x0, cond)``. The KL is to ``pretrained`` run without the condition.

    Returns:
        The fine-tuned model and a history with one dict per iteration
        (``reward``, ``kl``, ``loss``, ``grad_norm`` and, when available, ``mean``, ``g``).
    """
    check_method_settings("finetune_backprop", {
        "iterations": iterations, "batch_size": batch_size, "alpha": alpha, "backprop_steps": backprop_steps,
        "tau": tau, "hard": hard, "lr": lr, "grad_clip": grad_clip, "kl_budget": kl_budget})
    score = checked_reward(reward)
    ref = pretrained  # frozen for the call by @trains
    model = copy.deepcopy(pretrained).train().requires_grad_(True)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    history: list[dict] = []
    bar = progress_bar(range(iterations), desc="fine-tune (backprop)", progress=progress)
    # Each design keeps K steps of rows with gradients, so past L ≈ 256 the batch is drawn as several
    # chains, each adding its share of the loss (a mean over designs) and its gradient.
    chains = sequence_parts(batch_size, model.length, backprop_steps)
    for it in bar:
        cond = None if condition_sampler is None else condition_sampler(batch_size, gen)
        opt.zero_grad(set_to_none=True)
        loss, rewards, kls, designs = 0.0, [], [], []
        for chain in chains:
            size = chain.stop - chain.start
            part_cond = None if cond is None else cond[chain]
            x0, kl = model.sample_relaxed(
                size, sampler=sampler, tau=tau,
                backprop_steps=backprop_steps, ref=ref, generator=gen, hard=hard, cond=part_cond,
            )
            r = score(x0) if part_cond is None else score(x0, part_cond)
            if not r.requires_grad:
                raise ValueError("finetune_backprop needs a reward differentiable in its (soft) one-hot "
                                 "input; for a black-box reward use finetune=vidd, ppo or rwr")
            part_loss = (-r.mean() + alpha * kl.mean()) * (size / batch_size)
            part_loss.backward(inputs=params)  # the reward model's own weights need no gradients
            loss += part_loss.item()
            rewards.append(r.detach())
            kls.append(kl.detach())
            designs.append(x0.detach())
        grad_norm = nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        row = {"iteration": it, "loss": loss, "reward": torch.cat(rewards).mean().item(),
               "kl": torch.cat(kls).mean().item(), "grad_norm": float(grad_norm)}
        if hasattr(reward, "components") and cond is None:
            with torch.no_grad():
                mean, g = reward.components(torch.cat(designs))
            row.update(mean=mean.mean().item(), g=g.mean().item())
        history.append(row)
        bar.set_postfix(reward=f"{row['reward']:.3f}", kl=f"{row['kl']:.2f}")
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(f"fine-tuning diverged at iteration {it}: {row}")
        if kl_budget is not None and row["kl"] > kl_budget:
            break
    return model.eval().requires_grad_(False), history
