"""Where tensors live: one rule for the library and the app."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


class DeviceError(ValueError):
    """A device that does not exist on this machine (or is not a device at all)."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as given; ``None`` or ``"auto"`` picks CUDA when present, else the CPU.

    Raises:
        DeviceError: not a device name, a kind this project does not run on (xpu, meta, …), or a CUDA
            or MPS device this machine does not have.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device {device!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r} was asked for, but this torch has no MPS (Apple GPU) support "
                          "here; use device=cpu or device=auto")
    if dev.type not in ("cpu", "cuda", "mps"):  # torch parses them; this project never ran on them
        raise DeviceError(f"device {device!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {device!r} was asked for, but this machine has no CUDA device; "
                              f"use device=cpu or device=auto")
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {device!r} was asked for, but this machine has {count} CUDA "
                              f"device(s) (cuda:0 .. cuda:{count - 1})")
    return dev


def memory_bytes(device: torch.device) -> int:
    """The memory of ``device``: a GPU's own, or the machine's physical memory for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def set_threads(setting: int | str | None) -> None:
    """Torch CPU threads for one run: a count (at most the cores this process may use; more are cut to
    that, with a warning), ``auto`` or None (torch's default, every core).

    ``auto`` gives a single run every core (2 cores pretrain the default prior ~25 % faster than one)
    and each job of a Hydra multirun one thread, since its jobs run side by side (the local launcher
    starts one per core; the SLURM launcher asks for one CPU each).
    """
    if setting == "auto":
        setting = 1 if _in_multirun() else None
    if setting is not None and (isinstance(setting, bool) or not isinstance(setting, int) or setting < 1):
        raise ValueError(f"threads must be auto, null or an integer >= 1, got {setting!r}")
    if setting:
        threads, cores = setting, available_cores()
        if threads > cores:  # only slower (13× at 1,000 threads on 2 cores), and ~100,000 crash torch
            log.warning("threads=%d is more than the %d core(s) this process may use; using %d",
                        threads, cores, cores)
            threads = cores
        torch.set_num_threads(threads)


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (a SLURM job's share), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not inside a Hydra app (library use, tests)
        return False
