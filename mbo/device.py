"""Where tensors live: one rule for the library and the app."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device that does not exist on this machine (or is not a device at all)."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given; ``None`` or ``"auto"`` picks CUDA when present, else the CPU.

    Raises:
        DeviceError: not a device name, or a CUDA device on a machine without one.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device {device!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {device!r} was asked for, but this machine has no CUDA device; "
                              f"use device=cpu or device=auto")
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {device!r} was asked for, but this machine has {count} CUDA "
                              f"device(s) (cuda:0 .. cuda:{count - 1})")
    return dev
