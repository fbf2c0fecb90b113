"""Training functions whose only global-RNG draw is dropout (which takes no generator), seeded by their
own ``seed`` argument."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def dropout_seeded(fn: F) -> F:
    """``fn`` run with torch's global RNG forked and seeded by its ``seed`` argument, then restored.

    Every other draw of the project's training loops takes an explicit generator; dropout cannot. With
    a denoiser's ``dropout > 0`` a fine-tuned model (or a pretrained prior) then depends on whatever
    ran before it, not on its settings alone, and it moved the caller's RNG. With this it depends on
    ``seed`` only, and the caller's RNG is left as it was. Without dropout nothing changes.
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
            torch.manual_seed(int(bound.arguments["seed"]))
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]
