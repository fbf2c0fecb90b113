"""Checkpoints: named tensors in a safetensors file; the model's kind and building config in its metadata.

One format for every model in the project (diffusion models, reward models): the metadata holds
``format`` (:data:`FORMAT`), ``kind`` (the model class name, checked on load) and ``config`` (JSON, the
arguments that rebuild the model). Nothing is ever unpickled. Every load error is a
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from mbo.atomic import atomic_path

# /1 stored no kind (diffusion-only); such files are refused with a message saying so. /2 kept format,
# kind and config as three metadata entries, which safetensors writes in an arbitrary order, so the same
# model gave different file bytes (and sha256) on every save; /3 keeps them as one JSON entry, so a
# checkpoint's bytes, and its sha256 in provenance records, depend on its contents alone. /2 still loads.
FORMAT = "mbo-checkpoint/3"
_READABLE = ("mbo-checkpoint/2", FORMAT)
_META_KEY = "mbo"

_READ_ERRORS = (SafetensorError, OSError, RuntimeError, ValueError)


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another format or kind, or does not fit its model."""


def save_checkpoint(
    path: str | os.PathLike,
    module_or_state: nn.Module | dict[str, Tensor],
    config: dict[str, Any] | None = None,
    kind: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write tensors, ``kind`` and ``config`` to ``path`` (safetensors), atomically.

    Args:
        path: target file (conventionally ``*.safetensors``).
        module_or_state: a module (its ``state_dict()`` is saved) or a ``name -> tensor`` dict;
            tensors are copied to CPU.
        config: JSON-serializable dict that rebuilds the model; default ``module.config``.
        kind: the model's name, checked by :func:`load_checkpoint`; default ``type(module).__name__``
            (required when a dict is given).
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: no config/kind can be determined, or ``config`` is not JSON-serializable.
    """
    path = Path(path)
    if isinstance(module_or_state, nn.Module):
        state = module_or_state.state_dict()
        kind = kind or type(module_or_state).__name__
        if config is None:
            config = getattr(module_or_state, "config", None)
    else:
        state = dict(module_or_state)
        if kind is None:
            raise ValueError(f"{path}: kind is required when saving a dict of tensors")
    if config is None:
        raise ValueError(f"{path}: no config given and {kind} has no .config dict")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: config must be a dict, got {type(config).__name__}")
    try:
        config_json = json.dumps(config, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: config for {kind} is not JSON-serializable ({err})") from None
    # clone() breaks storage sharing (tied weights), which safetensors refuses to write.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    metadata = {_META_KEY: json.dumps({"format": FORMAT, "kind": kind, "config": config_json},
                                      sort_keys=True)}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (a checkpoint's identity in provenance records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a checkpoint's tensors (names, dtypes, shapes, values in name order): a model's
    identity in provenance records. Not the file's: a pretrained prior's metadata records its training
    wall time, so the same weights trained twice would give two file hashes.

    Raises:
        CheckpointError: the file is missing or not a safetensors file.
    """
    h = hashlib.sha256()
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in sorted(f.keys()):
                tensor = f.get_tensor(name).contiguous()
                h.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
                h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    except _READ_ERRORS as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err})") from None
    return h.hexdigest()


def _read_metadata(path: Path) -> dict[str, str]:
    """The checked metadata of ``path`` (format, kind and config present)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} " + ("is a folder, not a .safetensors file" if path.is_dir()
                                                       else "does not exist"))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except _READ_ERRORS as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file ({err})") from None
    if _META_KEY in meta:
        try:
            meta = json.loads(meta[_META_KEY])
        except json.JSONDecodeError:
            raise CheckpointError(f"checkpoint {path}: its metadata is not valid JSON") from None
        if not isinstance(meta, dict):
            raise CheckpointError(f"checkpoint {path}: its metadata is not a JSON object")
    if meta.get("format") not in _READABLE:
        found = meta.get("format")
        raise CheckpointError(
            f"checkpoint {path} is not an {FORMAT} checkpoint "
            + (f"(format {found!r}: written by an older version)" if found else "(no format in metadata)")
        )
    for key in ("kind", "config"):
        if key not in meta:
            raise CheckpointError(f"checkpoint {path} has no {key!r} in its metadata")
        if not isinstance(meta[key], str):
            raise CheckpointError(f"checkpoint {path}: its metadata's {key!r} is not text")
    return meta


def read_kind(path: str | os.PathLike) -> str:
    """The model kind stored in a checkpoint (its tensors are not read).

    Raises:
        CheckpointError: missing, corrupt or foreign file (the path is named).
    """
    return _read_metadata(Path(path))["kind"]


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The config stored in a checkpoint (its tensors are not read).

    Raises:
        CheckpointError: as :func:`load_checkpoint` (the path is named).
    """
    path = Path(path)
    return _config(path, _read_metadata(path))


def _config(path: Path, meta: dict[str, str]) -> dict[str, Any]:
    try:
        config = json.loads(meta["config"])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint {path}: config metadata is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path}: config metadata is not a JSON object")
    return config


def load_checkpoint(
    path: str | os.PathLike,
    kind: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the file.
        kind: if given, the checkpoint must hold this kind of model.
        device: where to put the tensors.

    Returns:
        ``(tensors, config)``.

    Raises:
        CheckpointError: missing, corrupt or truncated file, not a checkpoint of this project, another
            kind, or config metadata that is not a JSON object. The message names the path.
    """
    path = Path(path)
    meta = _read_metadata(path)
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(f"checkpoint {path} holds a {meta['kind']}, not a {kind}")
    config = _config(path, meta)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except _READ_ERRORS as err:
        raise CheckpointError(f"checkpoint {path} has corrupt tensor data ({err})") from None
    return tensors, config


def load_state_strict(module: nn.Module, state: dict[str, Tensor], path: str | os.PathLike) -> None:
    """Load ``state`` into ``module`` (strict), or raise a :class:`CheckpointError` naming ``path``
    and listing the missing, unexpected and shape-mismatched weights."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: stored {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    # A model of NaN weights would write designs, scored NaN, without a word. (Infinite values are
    # legitimate: a GP's constraint bounds are inf.)
    broken = sorted(k for k, t in state.items() if t.is_floating_point() and bool(torch.isnan(t).any()))
    if broken:
        raise CheckpointError(f"checkpoint {path} holds NaN weights: {broken[:5]}")
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing weights {missing}")
        if unexpected:
            parts.append(f"unexpected weights {unexpected}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes))
        raise CheckpointError(
            f"checkpoint {path} does not fit the {type(module).__name__} built from its config: "
            + ", ".join(parts)
        )
    try:
        # nn.Module's own loader: BoTorch's override re-transforms training targets, which models
        # rebuilt from a checkpoint (raw labels, or none for a variational GP) must not do.
        nn.Module.load_state_dict(module, state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit {type(module).__name__}: {err}") from None
