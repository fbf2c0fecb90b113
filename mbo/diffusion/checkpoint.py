"""Checkpoints: module weights in a safetensors file, the module's config as JSON in its metadata.

Generic for any ``nn.Module`` (reward models reuse :func:`save_checkpoint` / :func:`load_checkpoint`);
:func:`load_masked_diffusion` rebuilds a :class:`MaskedDiffusion` from the stored config. Nothing is
ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from mbo.atomic import atomic_path
from mbo.diffusion.denoiser import DENOISERS
from mbo.diffusion.masked import MaskedDiffusion

FORMAT = "mbo-checkpoint/1"


def save_checkpoint(
    path: str | os.PathLike,
    module: nn.Module,
    config: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``module``'s state dict and ``config`` to ``path`` (safetensors), atomically.

    Args:
        path: target file (conventionally ``*.safetensors``).
        module: any module; its tensors are copied to CPU.
        config: JSON-serializable dict needed to rebuild the module; default ``module.config``.
        overwrite: replace an existing file.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: ``config`` is missing or not JSON-serializable.
    """
    path = Path(path)
    if config is None:
        config = getattr(module, "config", None)
        if not isinstance(config, dict):
            raise ValueError(f"{path}: no config given and {type(module).__name__} has no .config dict")
    try:
        config_json = json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: config is not JSON-serializable ({e})") from None
    # clone() breaks storage sharing (tied weights), which safetensors refuses to write.
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "config": config_json})
    return path


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[dict[str, Tensor], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns:
        ``(state_dict, config)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a (complete) safetensors checkpoint of this project, or its config
            is unreadable. The message names the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"checkpoint {path} is corrupt or not a safetensors file ({e})") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise ValueError(
            f"checkpoint {path} has no {FORMAT} config in its metadata (not written by save_checkpoint)"
        )
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as e:
        raise ValueError(f"checkpoint {path}: config metadata is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"checkpoint {path}: config metadata is not a JSON object")
    return state, config


def load_state_into(module: nn.Module, path: str | os.PathLike) -> dict:
    """Load a checkpoint's weights into an existing ``module`` (strict); returns the config.

    Raises:
        ValueError: names, shapes or dtypes of the stored weights do not match ``module``.
    """
    state, config = load_checkpoint(path, device="cpu")
    _load_strict(module, state, path)
    return config


def _load_strict(module: nn.Module, state: dict[str, Tensor], path: str | os.PathLike) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: stored {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing weights {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected weights {unexpected[:5]}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise ValueError(f"checkpoint {path} does not match its config: " + ", ".join(parts))
    module.load_state_dict(state, strict=True)


def load_masked_diffusion(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    vocab_size: int | None = None,
    length: int | None = None,
) -> MaskedDiffusion:
    """Rebuild a :class:`MaskedDiffusion` (denoiser included) from a checkpoint, in eval mode.

    Args:
        path: file written by ``save_checkpoint(path, diffusion)``.
        device: where to put the model (default CPU).
        vocab_size, length: if given, the checkpoint must have been trained for these.

    Raises:
        FileNotFoundError, ValueError: missing, corrupt or mismatched checkpoint (the path is named).
    """
    state, config = load_checkpoint(path, device="cpu")
    if config.get("kind") != "MaskedDiffusion":
        raise ValueError(f"checkpoint {path} holds a {config.get('kind')!r}, not a MaskedDiffusion")
    for name, want in (("vocab_size", vocab_size), ("length", length)):
        if want is not None and config.get(name) != want:
            raise ValueError(f"checkpoint {path} was trained for {name}={config.get(name)}, expected {want}")
    cls = DENOISERS.get(config.get("denoiser_class", ""))
    if cls is None:
        raise ValueError(
            f"checkpoint {path}: unknown denoiser class {config.get('denoiser_class')!r} "
            f"(known: {sorted(DENOISERS)})"
        )
    try:
        denoiser = cls(**config["denoiser"])
        diffusion = MaskedDiffusion(
            denoiser, config["vocab_size"], config["length"], eps=config.get("eps", 1e-3)
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {path}: cannot rebuild the model from its config ({e})") from None
    _load_strict(diffusion, state, path)
    if device is not None:
        diffusion.to(device)
    return diffusion.eval()
