"""How the library's training entry points treat the caller's torch state.

An entry point that trains weights (pretraining, fine-tuning, fitting a reward model or classifier) is
decorated with :func:`trains`: it runs with gradients on whatever the caller's grad mode, refuses
``torch.inference_mode()`` with a message that says so, and hands back the modules it only reads (the
fine-tuners' pretrained reference) in the modes the caller left them in.
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
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Run with ``modules`` (None skipped) in eval mode and without parameter gradients, then give every
    submodule its own mode and every parameter its own ``requires_grad`` back.

    A fine-tuner's reference must be a fixed function (no dropout, no graph through its weights), but
    the caller's model is not the library's to change: it may go on training it.
    """
    live = [m for m in modules if m is not None]
    modes = [(m, m.training) for module in live for m in module.modules()]
    grads = [(p, p.requires_grad) for module in live for p in module.parameters()]
    for module in live:
        module.eval().requires_grad_(False)
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
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
