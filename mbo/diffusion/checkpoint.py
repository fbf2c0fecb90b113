"""Rebuild a :class:`MaskedDiffusion` from a checkpoint written by :func:`mbo.checkpoint.save_checkpoint`.

``save_checkpoint(path, diffusion)`` stores the kind ``"MaskedDiffusion"`` and ``diffusion.config``
(denoiser class and arguments included), which is all :func:`load_masked_diffusion` needs.
"""

from __future__ import annotations

import os

import torch

from mbo.checkpoint import CheckpointError, load_checkpoint, load_state_strict
from mbo.diffusion.denoiser import DENOISERS
from mbo.diffusion.masked import MaskedDiffusion
from mbo.diffusion.samplers import Sampler


def load_masked_diffusion(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    vocab_size: int | None = None,
    length: int | None = None,
    sampler: Sampler | int | str | None = None,
) -> MaskedDiffusion:
    """Rebuild a :class:`MaskedDiffusion` (denoiser included) from a checkpoint, in eval mode.

    Args:
        path: file written by ``save_checkpoint(path, diffusion)``.
        device: where to put the model (default CPU).
        vocab_size, length: if given, the checkpoint must have been trained for these.
        sampler: the loaded model's default sampler (not stored: how to sample is the caller's choice).

    Raises:
        CheckpointError: missing, corrupt or mismatched checkpoint (the path is named).
    """
    state, config = load_checkpoint(path, kind="MaskedDiffusion", device="cpu")
    for name in ("vocab_size", "length"):
        value = config.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(f"checkpoint {path}: its {name} is {value!r}, not a positive integer")
    for name, want in (("vocab_size", vocab_size), ("length", length)):
        if want is not None and config.get(name) != want:
            raise CheckpointError(
                f"checkpoint {path} was trained for {name}={config.get(name)}, expected {want}"
            )
    cls = DENOISERS.get(config.get("denoiser_class", ""))
    if cls is None:
        raise CheckpointError(
            f"checkpoint {path}: unknown denoiser class {config.get('denoiser_class')!r} "
            f"(known: {sorted(DENOISERS)})"
        )
    try:
        # The random initialization is overwritten below; drawing it must not move the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            denoiser = cls(**config["denoiser"])
        extra = {} if sampler is None else {"sampler": sampler}
        diffusion = MaskedDiffusion(denoiser, config["vocab_size"], config["length"],
                                    eps=config.get("eps", 1e-3), schedule=config.get("schedule", "linear"),
                                    **extra)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # RuntimeError: a negative dimension
        raise CheckpointError(f"checkpoint {path}: cannot rebuild the model from its config ({e})") from None
    load_state_strict(diffusion, state, path)
    if device is not None:
        diffusion.to(device)
    return diffusion.eval()
