"""What the library does with a caller's torch state: it uses the modes it needs and gives the caller's back.

- :func:`evaluating`: networks read as deterministic functions (sampling, guidance), in eval mode for
  the call.
- :func:`frozen`: the same, without parameter gradients (a fine-tuner's reference).
- :func:`trains`: the decorator of every entry point that trains weights (pretraining, fine-tuning,
  fitting a reward model or classifier): gradients on whatever the caller's grad mode, a clear refusal
  under ``torch.inference_mode()``, and the modules it only reads :func:`frozen` for the call.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def evaluating(*modules: nn.Module | None) -> Iterator[None]:
    """Run with ``modules`` (None skipped) in eval mode, then give every submodule back its own mode.

    Sampling reads the network as a deterministic function (chunking, skipped rows and cached
    predictions rely on it); a caller's model left in ``train()`` mode with dropout would otherwise
    draw from a noisy network, and the caller's mode is not the library's to change.
    """
    modes = [(m, m.training) for module in modules if module is not None for m in module.modules()]
    for module in modules:
        if module is not None:
            module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Run with ``modules`` (None skipped) in eval mode and without parameter gradients, then give every
    submodule its own mode and every parameter its own ``requires_grad`` back.

    A fine-tuner's reference must be a fixed function (no dropout, no graph through its weights), but
    the caller's model is not the library's to change: it may go on training it.
    """
    grads = [(p, p.requires_grad) for module in modules if module is not None for p in module.parameters()]
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        with evaluating(*modules):
            yield
    finally:
        for p, requires_grad in grads:
            p.requires_grad_(requires_grad)


def trains(*, frozen_args: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorate a training entry point (see the module docstring).

    Args:
        frozen_args: names of the decorated function's arguments that it reads but must not train (a
            fine-tuner's ``pretrained``); they are :func:`frozen` for the call.
    """
    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            if torch.is_inference_mode_enabled():
                # Tensors made there can never join autograd, so training would fail deep inside with
                # "does not require grad" or "inference tensors cannot be saved for backward".
                raise RuntimeError(f"{fn.__qualname__} trains weights, which torch.inference_mode() forbids: "
                                   f"call it outside that block (torch.no_grad() is fine)")
            bound = signature.bind(*args, **kwargs).arguments
            with torch.enable_grad(), frozen(*(bound.get(name) for name in frozen_args)):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate
