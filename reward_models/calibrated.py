"""Uncertainty that is honest where the model extrapolates, calibrated on the offline data alone.

A reward model fitted on measured designs is asked about designs better than any it saw; there its
error grows (TFBind8: 4× the in-distribution RMSE on the unseen top half) while an ensemble's spread
barely moves. :class:`ExtrapolationCalibrated` makes the offline data stage that situation: it holds
out the top ``holdout`` fraction of the labels, fits a probe copy of the model on the rest, and fits
two numbers so that the probe's error on the held-out top is covered:

    s(x)² = (k·σ(x))² + (b·max(0, μ(x) − q))²,

a global inflation k of the model's own std σ and a term that grows as the predicted mean μ climbs
past q, the 90th percentile of what the probe predicts for its own training data (the edge of where
it has seen labels). k and b minimize the Gaussian NLL of the held-out top (a small grid; label noise
included). The NLL optimum follows the bulk of the errors and leaves the largest ones out (TFBind8:
1σ covers 0.42 of the unseen top half), so a split-conformal step then scales (k, b) by the smallest
t ≥ 1 at which 1σ covers 68.3 % of the held-out top, as a Gaussian's would. The model is fitted again
on all the data and predicts with (t·k, t·b) and its own q. The mean is the model's, unchanged, so
rankings (Spearman) do not move.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any, Self

import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from mbo.caller_state import trains
from mbo.checkpoint import CheckpointError
from mbo.config import SettingsError
from mbo.data.dataset import SequenceDataset
from mbo.device import resolve_device
from reward_models.base import MIN_STD, RewardModel, dataset_labels

K_GRID = (1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0, 144.0)
B_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
EDGE_QUANTILE = 0.9
ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827: a Gaussian's 1σ coverage


def _conformal_scale(error: Tensor, epistemic_var: Tensor, noise_var: Tensor, min_var: float) -> float:
    """The smallest t >= 1 with ``|error| <= sqrt(t²·epistemic_var + noise_var)`` for a 68.3 % share of
    the rows (all ``(N,)``): the split-conformal quantile of the normalized errors, solved exactly per row.
    ``min_var`` (in the labels' units squared) keeps a zero epistemic variance from dividing by 0."""
    need = ((error**2 - noise_var) / epistemic_var.clamp_min(min_var)).clamp_min(0.0).sqrt()  # t per row
    return max(1.0, float(torch.quantile(need, ONE_SIGMA)))


class ExtrapolationCalibrated(RewardModel):
    """Any reward model with its std calibrated on an extrapolation split (see the module docstring).

    Args:
        model: an unfitted reward model (e.g. a ``DeepEnsemble``); fresh copies of it (same class and
            settings) are fitted, one as the probe and one on all data.
        holdout: the top fraction of labels held out to calibrate on, in (0, 0.5]. The default, half,
            stages the real question (how good is a design better than the better half of what was
            measured?): a small top slice sits right next to the data and under-states the error
            (TFBind8, NLL fit alone: holding out the top 10 % gave 1σ coverage 0.07 on the unseen top
            half, half gave 0.42; with the conformal step, 0.58: ``reward_models.md``).
        device: torch device.
    """

    def __init__(self, model: RewardModel, holdout: float = 0.5, device: str | torch.device | None = None):
        Model.__init__(self)
        if not 0.0 < holdout <= 0.5:
            raise ValueError(f"ExtrapolationCalibrated: holdout must be in (0, 0.5], got {holdout}")
        self.device = resolve_device(device)
        self.base = model
        self._config = {"holdout": float(holdout)}
        self.model: RewardModel | None = None
        self.register_buffer("k", torch.tensor(1.0))
        self.register_buffer("b", torch.tensor(0.0))
        self.register_buffer("q", torch.tensor(0.0))

    def _fresh(self) -> RewardModel:
        return type(self.base)(**self.base.config, device=str(self.device))

    # ------------------------------------------------------------------ fit
    def split(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Bool ``(N,)`` masks of the labels ``(N,)`` the probe is fitted on (at or below the
        ``1 − holdout`` quantile) and of the held-out top; a ValueError, before anything is fitted, unless
        the probe has 2 distinct labels to learn from and 2 rows are held out (:meth:`fit` needs both)."""
        y = labels.double().reshape(-1)
        cut = torch.quantile(y, 1.0 - self._config["holdout"])
        low, high = y <= cut, y > cut
        distinct = y[low].unique().numel()
        if int(high.sum()) < 2 or distinct < 2:
            raise SettingsError(  # a ValueError the apps report in one line (exit 2)
                f"ExtrapolationCalibrated: holding out the labels above their "
                f"{1 - self._config['holdout']:.0%} quantile ({float(cut):g}) of {len(y)} labels leaves "
                f"{int(high.sum())} held-out rows and {distinct} distinct label(s) below it, and the "
                f"calibration needs 2 of each (ties at the quantile stay below it); use more or more varied "
                f"labels, or a reward model without calibration")
        return low, high

    @trains()
    def fit(self, dataset: SequenceDataset, seed: int = 0, progress: bool = False) -> Self:
        """Calibrate (k, b) on the held-out top of ``dataset``'s labels, then fit on all of it."""
        y = dataset_labels(dataset, "ExtrapolationCalibrated.fit")
        low, high = self.split(y)
        probe = self._fresh().fit(dataset.subset(low), seed=seed, progress=progress)
        with torch.no_grad():
            q = self._edge(probe, dataset.subset(low))
            x_high = dataset.subset(high).one_hot().to(self.device)
            mu, sd = probe.mean_std(x_high)
            _, total = probe.mean_std(x_high, observation_noise=True)
            noise_var = (total.double() ** 2 - sd.double() ** 2).clamp_min(0.0)
            resid = y[high].to(mu.device).double() - mu.double()
            over = (mu.double() - q).clamp_min(0.0)
            # The variance floor is relative to the labels' spread: an absolute 1e-12 outweighed every
            # variance of labels in units of 1e-6 or less, so the grid chose another (k, b) and the std
            # stopped scaling with the labels (the README promises any scale from 1e-9 to 1e30).
            min_var = max(1e-12 * float(y.double().var()), MIN_STD)
            best = (math.inf, 1.0, 0.0)
            for k, b in itertools.product(K_GRID, B_GRID):
                var = (k * sd.double()) ** 2 + (b * over) ** 2 + noise_var + min_var
                nll = float((0.5 * var.log() + 0.5 * resid**2 / var).mean())
                best = min(best, (nll, k, b))
            epistemic = (best[1] * sd.double()) ** 2 + (best[2] * over) ** 2
            t = _conformal_scale(resid.abs(), epistemic, noise_var, min_var)
        self.k.fill_(t * best[1])
        self.b.fill_(t * best[2])
        self.model = self._fresh().fit(dataset, seed=seed, progress=progress)
        with torch.no_grad():
            self.q.fill_(self._edge(self.model, dataset))
        self.length, self.vocab_size = dataset.length, dataset.alphabet.size
        self.calibration = {"k": t * best[1], "b": t * best[2], "nll": best[0], "conformal_scale": t,
                            "held_out": int(high.sum())}
        return self.eval()

    def _edge(self, model: RewardModel, data: SequenceDataset) -> float:
        mu = torch.cat([model.mean_std(chunk.to(self.device))[0] for chunk in data.one_hot().split(4096)])
        return float(torch.quantile(mu.double().cpu(), EDGE_QUANTILE))

    # ------------------------------------------------------------------ predictions
    def mean_std(self, x: Tensor, observation_noise: bool = False) -> tuple[Tensor, Tensor]:
        """The model's mean and the calibrated std ``(N,)`` (differentiable in ``x``)."""
        self._require_fitted()
        mu, sd = self.model.mean_std(x)
        # Variances in float64: in float32 a std past ~1e19 (labels of 1e30 are allowed) squared to inf,
        # so the std was inf, and with observation noise inf - inf = NaN.
        sd64 = sd.double()
        var = (self.k * sd64) ** 2 + (self.b * (mu.double() - self.q).clamp_min(0.0)) ** 2
        if observation_noise:
            _, total = self.model.mean_std(x, observation_noise=True)
            var = var + (total.double() ** 2 - sd64**2).clamp_min(0.0)
        # With k >= 1 the variance is at least the model's own std squared, which scales with the labels;
        # this floor only guards an inner std of exactly 0 (sqrt's gradient at 0, a std of 0 in the
        # output's dtype), so it sits at the smallest std that dtype holds, below any label scale (an
        # absolute 1e-24 sat a thousandth of the spread below labels in units of 1e-9).
        floor = max(torch.finfo(sd.dtype).tiny ** 2, MIN_STD)
        return mu, var.clamp_min(floor).sqrt().to(sd.dtype)

    def posterior(self, X: Tensor, output_indices: list[int] | None = None, observation_noise: bool = False,
                  posterior_transform=None, **kwargs: Any):
        """Independent Gaussians with the calibrated mean and std at ``X (batch..., q, L*V)``."""
        self._check_flat(X)
        batch = X.shape[:-1]
        mean, std = self.mean_std(X.reshape(-1, self.length, self.vocab_size), observation_noise)
        mvn = MultivariateNormal(mean.reshape(*batch).double(),
                                 DiagLinearOperator(std.reshape(*batch).double() ** 2))
        post = GPyTorchPosterior(mvn)
        return post if posterior_transform is None else posterior_transform(post)

    # ------------------------------------------------------------------ checkpoints
    @property
    def config(self) -> dict[str, Any]:
        return {**self._config, "model_class": type(self.base).__name__, "model": self.base.config}

    def _checkpoint_tensors(self) -> dict[str, Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model._checkpoint_tensors().items()}
        return {**tensors, "k": self.k, "b": self.b, "q": self.q}

    def _fitted_config(self) -> dict[str, Any]:
        return {**super()._fitted_config(), "model": self.model._fitted_config()}

    @classmethod
    def _from_init(cls, init: dict[str, Any], device: torch.device, path: str | os.PathLike) -> Self:
        """The wrapped model's class is named in the checkpoint."""
        from reward_models import MODEL_CLASSES

        inner_cls = MODEL_CLASSES.get(init.get("model_class"))
        if inner_cls is None:
            raise CheckpointError(f"{path}: unknown wrapped model {init.get('model_class')!r}")
        return cls(inner_cls(**init["model"], device=device), holdout=init["holdout"], device=device)

    def _restore(self, tensors: dict[str, Tensor], fitted: dict[str, Any], path: str | os.PathLike) -> None:
        try:
            self.length, self.vocab_size = fitted["length"], fitted["vocab_size"]
            self.model = self._fresh()
            self.model._restore({k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
                                fitted["model"], path)
            for name in ("k", "b", "q"):
                getattr(self, name).copy_(tensors[name])
        except KeyError as err:
            raise CheckpointError(f"{path}: missing {err}") from None
