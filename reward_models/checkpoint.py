"""Safe checkpoints for reward models: tensors in safetensors, the building config in its metadata.

Nothing is unpickled on load: a checkpoint is a flat ``name -> tensor`` map plus string metadata
holding the class name, a format version and the JSON config that built the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from mbo.atomic import atomic_path

FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or was written for another model."""


def save_tensors(path: str | os.PathLike, tensors: dict[str, Tensor], kind: str,
                 config: dict[str, Any], overwrite: bool = False) -> Path:
    """Write ``tensors`` and ``config`` (JSON-serializable) atomically to a safetensors file.

    Args:
        path: destination file; refused if it exists unless ``overwrite``.
        tensors: name -> tensor (moved to CPU, made contiguous).
        kind: the model class name, checked on load.
        config: the keyword arguments (plus fitted shapes) needed to rebuild the model.
    """
    try:
        config_json = json.dumps(config, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"config for {kind} is not JSON-serializable: {err}") from None
    metadata = {"kind": kind, "format_version": FORMAT_VERSION, "config": config_json}
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(flat, str(tmp), metadata=metadata)
    return Path(path)


def read_kind(path: str | os.PathLike) -> str:
    """The model class name stored in a checkpoint (without loading its tensors)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({err})") from None
    if "kind" not in meta:
        raise CheckpointError(f"{path}: no 'kind' in metadata; not a reward-model checkpoint")
    return meta["kind"]


def load_tensors(path: str | os.PathLike, kind: str,
                 device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_tensors` for model class ``kind``.

    Returns:
        ``(tensors, config)``.

    Raises:
        CheckpointError: missing/corrupt file, wrong format version, or written for another class.
    """
    path = Path(path)
    found = read_kind(path)
    if found != kind:
        raise CheckpointError(f"{path}: checkpoint holds a {found}, not a {kind}")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta.get('format_version')!r}, "
                              f"expected {FORMAT_VERSION!r}")
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: bad config metadata ({err})") from None
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt tensor data ({err})") from None
    return tensors, config


def load_state_strict(module: torch.nn.Module, state: dict[str, Tensor], path: str | os.PathLike
                      ) -> None:
    """``module.load_state_dict(state)`` with a :class:`CheckpointError` naming the file on mismatch."""
    try:
        # nn.Module's own loader: BoTorch's override re-transforms training targets, which models
        # rebuilt from a checkpoint (raw labels, or none for a variational GP) must not do.
        torch.nn.Module.load_state_dict(module, state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: tensors do not match the model built from its config: "
                              f"{err}") from None
