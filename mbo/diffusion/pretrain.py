"""Pretraining a masked diffusion model on an unlabeled corpus (the "natural designs" prior p_pre)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from hydra.utils import instantiate
from torch import Tensor

from mbo.caller_state import trains
from mbo.device import memory_bytes
from mbo.diffusion.checkpoint import load_masked_diffusion
from mbo.diffusion.masked import MaskedDiffusion
from mbo.diffusion.policy import MinProbability
from mbo.method_settings import check_method_settings
from mbo.progress import progress_bar
from mbo.seeding import dropout_seeded

# Peak memory of a pretraining step grows by about 5 floats per float of the attention tensors
# (batch × heads × L² × depth/2) between L = 400 and 600 on the CPU with the default denoiser: 5.3 in
# experiments/results/pretrain_memory.md, 5.0 and 5.4 in two earlier runs. The rest (about 0.4 GiB) is
# left out, so the estimate is a little low at long L, where only it matters: only sure failures are
# refused.
ATTENTION_COPIES = 5.0


def training_memory(length: int, denoiser: Mapping, batch_size: int) -> int:
    """Rough peak bytes of one training step (a forward and backward pass of ``batch_size`` sequences
    of ``length`` through the ``denoiser`` settings): at long L the attention tensors (batch × heads ×
    L² floats per layer) are nearly all of it. A fine-tuner holds at least one such pass."""
    return int(ATTENTION_COPIES * 4 * batch_size * denoiser["heads"] * length**2 * denoiser["depth"] / 2)


def pretraining_memory(length: int, settings: Mapping) -> int:
    """:func:`training_memory` of one pretraining step of the ``diffusion`` settings."""
    return training_memory(length, settings["denoiser"], settings["pretrain"]["batch_size"])


def check_training_memory(length: int, denoiser: Mapping, batch_size: int, device: str | torch.device,
                          setting: str, what: str = "pretraining") -> None:
    """Refuse, before it starts, training that cannot fit in ``device``'s memory (a sure failure only:
    :func:`training_memory` leaves out all but the attention), rather than be killed or swap minutes in.
    ``setting`` names the batch size to lower."""
    need, have = training_memory(length, denoiser, batch_size), memory_bytes(torch.device(device))
    if need > have:
        raise MemoryError(
            f"{what} on sequences of length {length} needs about {need / 2**30:.0f} GiB (attention of "
            f"{batch_size} sequences × L²), more than the {have / 2**30:.0f} GiB of {device}; lower "
            f"{setting} to {max(1, int(batch_size * have / need))} or less")


def sampling_policy(settings: Mapping) -> MinProbability | None:
    """The sampling rule of the ``diffusion`` settings: min-p truncation at ``min_prob`` (or none)."""
    min_prob = float(settings.get("min_prob", 0.0))
    # MinProbability refuses what is outside [0, 1) (a negative one was once read as none).
    return MinProbability(min_prob) if min_prob != 0 else None


def load_diffusion(path, settings: Mapping, device: str | torch.device | None = None,
                   **expect) -> MaskedDiffusion:
    """A checkpoint (:func:`~mbo.diffusion.checkpoint.load_masked_diffusion`, ``expect``: its
    ``vocab_size`` / ``length`` checks) with the sampler and min-p rule of the ``diffusion``
    ``settings``, which a checkpoint does not hold: how to sample is the settings' choice."""
    model = load_masked_diffusion(path, device=device, sampler=instantiate(settings["sampler"]), **expect)
    model.policy = sampling_policy(settings)
    return model


def build_diffusion(settings: Mapping, vocab_size: int, length: int,
                    device: str | torch.device | None = None) -> MaskedDiffusion:
    """A freshly initialized model from the ``diffusion`` config group.

    ``settings`` holds ``denoiser`` (a ``_target_`` node; vocab size and length are filled in),
    ``schedule``, ``sampler``, ``min_prob`` (:func:`sampling_policy`) and ``pretrain.seed``, which
    seeds the initialization (the caller's RNG is left alone), so a model depends on its settings only.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(settings["pretrain"]["seed"]))
        denoiser = instantiate(settings["denoiser"], vocab_size=vocab_size, length=length)
    diffusion = MaskedDiffusion(denoiser, vocab_size, length, schedule=settings["schedule"],
                                sampler=instantiate(settings["sampler"]), policy=sampling_policy(settings))
    return diffusion if device is None else diffusion.to(device)


def check_corpus(corpus: Tensor, vocab_size: int, length: int | None = None) -> None:
    """Refuse a corpus that is not a non-empty LongTensor ``(N, L)`` of tokens in ``[0, vocab_size)``
    (of ``length`` positions, when given), naming the first bad row and position."""
    if not isinstance(corpus, Tensor) or corpus.dtype != torch.long or corpus.dim() != 2:
        got = f"{corpus.dtype} {tuple(corpus.shape)}" if isinstance(corpus, Tensor) else type(corpus)
        raise ValueError(f"corpus must be a LongTensor (N, L), got {got}")
    if corpus.shape[0] == 0:
        raise ValueError("corpus is empty")
    if length is not None and corpus.shape[1] != length:
        raise ValueError(f"corpus has length {corpus.shape[1]} but the model has length {length}")
    bad = (corpus < 0) | (corpus >= vocab_size)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"corpus row {row}, position {col}: token {int(corpus[row, col])} is outside "
            f"[0, {vocab_size - 1}]"
        )


def warmup_problem(warmup: int, steps: int) -> str | None:
    """What is wrong with a pretraining ``warmup`` longer than its ``steps``, or None: training would
    stop while the learning rate is still rising (a short trial run below the default warmup)."""
    if warmup <= steps:
        return None
    return (f"diffusion.pretrain.warmup={warmup} is more than diffusion.pretrain.steps={steps}: the "
            f"learning rate would never reach diffusion.pretrain.lr; lower diffusion.pretrain.warmup to "
            f"{steps} or less")


@trains()
@dropout_seeded
def pretrain(
    diffusion: MaskedDiffusion,
    corpus: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup: int,
    ema: float = 0.0,
    masks: str = "time",
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    log_every: int = 50,
) -> list[dict]:
    """Fit ``diffusion`` to ``corpus`` by minimizing the NELBO (AdamW, warmup then cosine decay).

    Batches are drawn uniformly with replacement; everything random comes from ``seed``. The
    settings' defaults are those of the ``diffusion`` config group's ``pretrain`` node.

    Args:
        diffusion: the model, trained in place (moved to ``device`` if given).
        corpus: LongTensor ``(N, L)`` of tokens in [0, V).
        steps: optimizer steps.
        batch_size: sequences per step.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup: linear warmup steps.
        ema: if > 0, the model ends with an exponential moving average of its weights (decay ``ema``,
            a running mean over the first 1/(1 − ema) steps) instead of the last step's.
        masks: how a batch's masks are drawn: ``time`` (a stratified time t per row, each position
            masked with probability 1 − α_t: :meth:`MaskedDiffusion.loss`) or ``count`` (a stratified
            number of masked positions k ∈ 1..L per row, the NELBO's discrete form
            E_k[(1/k)·Σ_masked −log x̂]: the same objective for the linear schedule, lower variance).
        seed: RNG seed for batches, times and masks.
        device: where to train (default: the model's device).
        progress: show a tqdm bar.
        log_every: steps between history entries.

    Returns:
        History, a list of ``{"step": int, "loss": float}``: the mean training NELBO per token (nats)
        over the last ``log_every`` steps (and the final partial window).
    """
    check_corpus(corpus, diffusion.vocab_size, diffusion.length)
    check_method_settings("pretrain", {"steps": steps, "batch_size": batch_size, "lr": lr,
                                       "weight_decay": weight_decay, "warmup": warmup, "ema": ema,
                                       "masks": masks, "seed": seed, "log_every": log_every})
    device = torch.device(device) if device is not None else diffusion.device
    diffusion.to(device)
    diffusion.train()
    data = corpus.to(device)
    batch_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)

    optimizer = torch.optim.AdamW(diffusion.parameters(), lr=lr, weight_decay=weight_decay)

    def lr_factor(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        progress_frac = (i - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_frac)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    average = [p.detach().clone() for p in diffusion.parameters()] if ema > 0 else None
    history: list[dict] = []
    window: list[float] = []
    bar = progress_bar(range(1, steps + 1), progress=progress, desc="pretrain")
    for step in bar:
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=batch_gen).to(device)
        x0 = data[idx]
        if masks == "time":
            loss = diffusion.loss(x0, generator=noise_gen)
        else:
            loss = _count_loss(diffusion, x0, noise_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if average is not None:
            with torch.no_grad():
                decay = min(ema, 1.0 - 1.0 / (step + 1))
                for a, p in zip(average, diffusion.parameters(), strict=True):
                    a.lerp_(p.detach(), 1.0 - decay)
        window.append(loss.item())
        if step % log_every == 0 or step == steps:
            mean = sum(window) / len(window)
            history.append({"step": step, "loss": mean})
            window.clear()
            bar.set_postfix(nelbo=f"{mean:.4f}")
    if average is not None:
        with torch.no_grad():
            for a, p in zip(average, diffusion.parameters(), strict=True):
                p.copy_(a)
    diffusion.eval()
    return history


def _count_loss(diffusion: MaskedDiffusion, x0: Tensor, generator: torch.Generator) -> Tensor:
    """NELBO per token with a stratified number of masked positions k per row (``masks="count"``):
    −log p(x) ≤ Σ_k (1/k)·E_{|M|=k}[Σ_{i∈M} −log x̂(x_M̄)_i] = L·E_{k~U{1..L}}[(1/k)·Σ_{i∈M} ...]."""
    b, length = x0.shape
    u = torch.rand((), device=x0.device, generator=generator)
    k = 1 + (((u + torch.arange(b, device=x0.device) / b) % 1.0) * length).long().clamp_max(length - 1)
    ranks = torch.rand(x0.shape, device=x0.device, generator=generator).argsort(-1).argsort(-1)
    masked = ranks < k[:, None]
    xt = torch.where(masked, torch.full_like(x0, diffusion.mask_id), x0)
    nll = -diffusion.x0_log_probs(diffusion.encode(xt)).gather(-1, x0[..., None]).squeeze(-1)
    return ((nll * masked).sum(-1) / k).mean()
