"""What every reward model shares: input checks, fitted shapes, label standardization, checkpoints.

A reward model is a BoTorch :class:`~botorch.models.model.Model` with one output. Two views of the
same predictor:

- ``posterior(X)`` with ``X`` float ``(batch..., q, L*V)`` — the flattened (soft) one-hot — so BoTorch
  acquisition functions and ``optimize_acqf_discrete(acq, q, choices=(n, L*V))`` work unchanged;
- ``mean_std(x)`` with ``x`` float ``(N, L, V)``, differentiable in ``x`` (soft one-hot allowed), for
  fine-tuning code that backpropagates through the reward.

Outputs are always in label units: targets are standardized inside ``fit`` and un-standardized on
the way out.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path
from typing import Any, Self

import torch
from botorch.models.model import Model
from torch import Tensor

from mbo import checkpoint
from mbo.data.dataset import SequenceDataset
from mbo.data.io import LABEL_MAX
from mbo.device import resolve_device

MIN_STD = float(torch.finfo(torch.float64).tiny)
"""The smallest label spread an outcome transform scales by: labels of any finite scale are
standardized (only labels that are all equal are merely de-meaned)."""


def dataset_labels(dataset: SequenceDataset, where: str) -> Tensor:
    """The labels of ``dataset`` as float ``(N,)``; a clear error if absent or multi-output."""
    if dataset.labels is None:
        raise ValueError(f"{where}: the dataset has no labels; a reward model needs (N,) labels")
    y = dataset.labels
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise ValueError(f"{where}: labels must be (N,) (one output), got {tuple(y.shape)}")
    if len(dataset) < 2:
        raise ValueError(f"{where}: need at least 2 labeled sequences, got {len(dataset)}")
    if not torch.isfinite(y).all():
        raise ValueError(f"{where}: labels must be finite; impute or drop the -inf (infeasible) rows first")
    if bool((y == y[0]).all()):
        raise ValueError(f"{where}: all {len(y)} labels are equal ({float(y[0]):g}); there is nothing to "
                         "learn which sequences are better")
    if float(y.abs().max()) > LABEL_MAX:
        raise ValueError(f"{where}: labels reach {float(y.abs().max()):.3g}; predictions in float32 overflow "
                         f"past |y| = {LABEL_MAX:g}: change the unit")
    return y.to(torch.float32)


class RewardModel(Model):
    """Mixin for the project's reward models (single output, inputs are flattened one-hot).

    Subclasses set ``self.length`` / ``self.vocab_size`` when fitted and implement ``fit``,
    ``mean_std``, ``_checkpoint_tensors`` and ``_from_checkpoint``.
    """

    length: int | None = None
    vocab_size: int | None = None

    # ------------------------------------------------------------------ shapes and checks
    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def is_fitted(self) -> bool:
        return self.length is not None

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(dataset) first")

    def _check_onehot(self, x: Tensor) -> None:
        """Raise unless ``x`` is float ``(N, L, V)`` matching the fitted shape."""
        self._require_fitted()
        if not torch.is_floating_point(x) or x.dim() != 3:
            raise ValueError(f"{type(self).__name__}: expected float one-hot (N, L, V), got "
                             f"{x.dtype} {tuple(x.shape)}")
        if tuple(x.shape[1:]) != (self.length, self.vocab_size):
            raise ValueError(f"{type(self).__name__} was fitted on (L, V)=({self.length}, "
                             f"{self.vocab_size}), got input (N, L, V)={tuple(x.shape)}")

    def _check_flat(self, X: Tensor) -> None:
        """Raise unless ``X`` is float ``(batch..., q, L*V)`` matching the fitted shape."""
        self._require_fitted()
        d = self.length * self.vocab_size
        if not torch.is_floating_point(X) or X.dim() < 2 or X.shape[-1] != d:
            raise ValueError(f"{type(self).__name__}.posterior: expected float X of shape "
                             f"(batch..., q, L*V={d}), got {X.dtype} {tuple(X.shape)}")

    # ------------------------------------------------------------------ the differentiable view
    @abstractmethod
    def fit(self, dataset: SequenceDataset, seed: int = 0, progress: bool = False) -> Self:
        """Fit on ``dataset`` (labels ``(N,)``); returns ``self``."""

    @abstractmethod
    def mean_std(self, x: Tensor, observation_noise: bool = False) -> tuple[Tensor, Tensor]:
        """Predictive mean and std, each ``(N,)``, in label units, for float one-hot ``x (N, L, V)``.

        Differentiable w.r.t. ``x`` (soft one-hot allowed). ``observation_noise=False`` gives the
        epistemic std (what conservative rewards want); ``True`` adds the fitted label noise
        (what calibration against measured labels wants).
        """

    # ------------------------------------------------------------------ checkpoints
    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments that built this model (JSON-serializable)."""
        return dict(self._config)

    @abstractmethod
    def _checkpoint_tensors(self) -> dict[str, Tensor]:
        """Everything needed besides the config to restore the fitted model."""

    @abstractmethod
    def _restore(self, tensors: dict[str, Tensor], fitted: dict[str, Any],
                 path: str | os.PathLike) -> None:
        """Rebuild the fitted state from :meth:`_checkpoint_tensors` output."""

    def _fitted_config(self) -> dict[str, Any]:
        return {"length": self.length, "vocab_size": self.vocab_size}

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write a safetensors checkpoint (tensors + the building config); atomic."""
        self._require_fitted()
        config = {"init": self.config, "fitted": self._fitted_config()}
        return checkpoint.save_checkpoint(path, self._checkpoint_tensors(), config,
                                          kind=type(self).__name__, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> Self:
        """Rebuild a fitted model from :meth:`save` output; no unpickling."""
        dev = resolve_device(device)
        tensors, config = checkpoint.load_checkpoint(path, kind=cls.__name__, device=dev)
        try:
            model = cls._from_init(config["init"], dev, path)
            model._restore(tensors, config.get("fitted", {}), path)
        except checkpoint.CheckpointError:  # already says what is wrong with the file
            raise
        except REBUILD_ERRORS as err:
            raise checkpoint.CheckpointError(f"{path}: config does not build a {cls.__name__}: "
                                             f"{err}") from None
        return model.eval()

    @classmethod
    def _from_init(cls, init: dict[str, Any], device: torch.device, path: str | os.PathLike) -> Self:
        """The unfitted model a checkpoint's ``init`` config describes (:meth:`load` restores it)."""
        return cls(**init, device=device)


# What a checkpoint's config can make a constructor or a restore raise (a count of 0, a shape given as
# text, a list where a mapping belongs): each means the file, not the project, is wrong.
REBUILD_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError)


def load_reward_model(path: str | os.PathLike, device: str | torch.device | None = None
                      ) -> RewardModel:
    """Load any reward-model checkpoint, dispatching on the class name stored in it."""
    from reward_models import MODEL_CLASSES

    kind = checkpoint.read_kind(path)
    if kind not in MODEL_CLASSES:
        raise checkpoint.CheckpointError(f"{path}: unknown reward model kind {kind!r}; known: "
                                         f"{sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[kind].load(path, device=device)
