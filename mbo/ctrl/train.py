"""Training a conditional model from scratch on the labeled rows (the classifier-free baseline)."""

from __future__ import annotations

import torch
from torch import Tensor

from mbo.caller_state import trains
from mbo.diffusion.masked import MaskedDiffusion
from mbo.progress import progress_bar


@trains()
def train_conditional(model: MaskedDiffusion, tokens: Tensor, cond: Tensor, *, steps: int = 2000,
                      batch_size: int = 128, lr: float = 2e-3, drop_prob: float = 0.15, seed: int = 0,
                      progress: bool = True) -> list[float]:
    """Minimize the conditional NELBO E[−log p_θ(x | c)] on labeled rows, in place.

    Each factor of a row's condition is replaced by null with probability ``drop_prob`` so the same
    network also learns the unconditional model (classifier-free guidance).

    Args:
        model: a conditional ``MaskedDiffusion`` (``ConditionalDenoiser`` inside).
        tokens: LongTensor ``(N, L)``.
        cond: LongTensor ``(N, F)``; rows may already be null in factors they have no label for.

    Returns:
        The training loss per step.
    """
    if len(tokens) != len(cond) or len(tokens) == 0:
        raise ValueError(f"tokens {tuple(tokens.shape)} and cond {tuple(cond.shape)} must have the "
                         "same N > 0")
    device = model.device
    null = model.denoiser.null_condition.to(device)
    tokens, cond = tokens.to(device), cond.to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 100) * (1 - i / steps))
    model.train()
    losses = []
    for _ in progress_bar(range(steps), desc="conditional from scratch", progress=progress):
        idx = torch.randint(len(tokens), (batch_size,), generator=gen, device=device)
        c = cond[idx]
        drop = torch.rand(c.shape, generator=gen, device=device) < drop_prob
        loss = model.loss(tokens[idx], generator=gen, cond=torch.where(drop, null, c))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses
