"""Gaussian-process reward models through BoTorch/GPyTorch.

- :class:`OneHotGP`: exact ``SingleTaskGP`` (BoTorch defaults: ARD RBF kernel) on flattened one-hot.
- :class:`CategoricalGP`: exact ``SingleTaskGP`` with a Hamming kernel (BoTorch's ``CategoricalKernel``
  on tokens, written on one-hot so ``mean_std`` is differentiable; see :class:`OneHotHammingKernel`).
- :class:`VariationalGP`: ``SingleTaskVariationalGP`` with inducing points, trained on mini-batches,
  for training sets past a few thousand points.

All are fitted with ``fit_gpytorch_mll`` under an iteration limit, compute in float64 (BoTorch's
recommendation) and return results in the caller's dtype from ``mean_std``.
"""

from __future__ import annotations

import os
import warnings
from functools import partial
from typing import Any, Self

import torch
from botorch.exceptions.warnings import OptimizationWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP, SingleTaskVariationalGP
from botorch.models.model import Model
from botorch.models.transforms.outcome import Standardize
from gpytorch.kernels import ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood, VariationalELBO
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from mbo.caller_state import trains
from mbo.checkpoint import CheckpointError, load_state_strict
from mbo.data.dataset import SequenceDataset
from mbo.device import resolve_device
from mbo.method_settings import check_method_settings
from mbo.progress import progress_bar
from reward_models.base import MIN_STD, RewardModel, dataset_labels
from reward_models.kernels import OneHotHammingKernel

DTYPE = torch.float64


class _GPRewardModel(RewardModel):
    """Shared plumbing: ``self.gp`` is a fitted BoTorch GP on flattened one-hot (float64)."""

    def __init__(self, device: str | torch.device | None = None):
        Model.__init__(self)
        self.device = resolve_device(device)
        self.gp: Model | None = None

    def _train_data(self, dataset: SequenceDataset, seed: int, max_train: int | None
                    ) -> tuple[Tensor, Tensor]:
        y = dataset_labels(dataset, f"{type(self).__name__}.fit")
        X = dataset.one_hot().flatten(1)
        if max_train is not None and len(y) > max_train:
            gen = torch.Generator().manual_seed(seed)
            keep = torch.randperm(len(y), generator=gen)[:max_train]
            X, y = X[keep], y[keep]
        self.length, self.vocab_size = dataset.length, dataset.alphabet.size
        return X.to(self.device, DTYPE), y.to(self.device, DTYPE).unsqueeze(-1)

    @property
    def batch_shape(self) -> torch.Size:
        return self.gp.batch_shape

    def _freeze(self) -> None:
        """Eval mode with the fitted hyperparameters fixed, once ``self.gp`` is fitted or restored.

        Predictions then build no graph through the hyperparameters, only through the input: reward
        backprop wants gradients in the design alone, and GPyTorch's caches of eval mode (exact GPs
        detach theirs; see ``VariationalGP.posterior`` for the variational one) are fixed functions of
        the hyperparameters only while those stay fixed.
        """
        self.gp.requires_grad_(False)
        self.eval()

    def posterior(self, X: Tensor, output_indices: list[int] | None = None,
                  observation_noise: bool = False, posterior_transform=None, **kwargs: Any):
        """GPyTorch posterior at ``X (batch..., q, L*V)`` (float64) in label units."""
        self._check_flat(X)
        return self.gp.posterior(X.to(self.device, DTYPE), output_indices=output_indices,
                                 observation_noise=observation_noise,
                                 posterior_transform=posterior_transform, **kwargs)

    def mean_std(self, x: Tensor, observation_noise: bool = False) -> tuple[Tensor, Tensor]:
        """Posterior mean and std ``(N,)`` (latent f, plus label noise if asked), differentiable."""
        self._check_onehot(x)
        # One joint posterior over the N points, of which only the marginals are read: GPyTorch
        # keeps the covariance lazy and computes just its diagonal. (N q=1 batches instead would
        # make an exact GP expand its training covariance per batch.)
        post = self.posterior(x.flatten(1), observation_noise=observation_noise)
        mean = post.mean.reshape(-1)
        # The diagonal of the covariance, not ``post.variance``: GPyTorch floors that at 1e-10 in label
        # units (with a warning), which for labels in units of 1e-9 made every std 1e-5, 10^4 times
        # their spread. The floor here is relative to the labels' scale.
        var = post.distribution.lazy_covariance_matrix.diagonal(dim1=-2, dim2=-1).reshape(-1)
        scale = self.gp.outcome_transform.stdvs.reshape(())
        std = var.clamp_min(1e-12 * scale**2).sqrt()
        return mean.to(x.dtype), std.to(x.dtype)

    def noise_std(self) -> float:
        """Fitted label-noise std in label units."""
        self._require_fitted()
        noise = self.gp.likelihood.noise.detach().reshape(-1)[0]
        tf = getattr(self.gp, "outcome_transform", None)
        scale = tf.stdvs.reshape(-1)[0] if tf is not None else 1.0
        return float(noise.sqrt() * scale)


class _ExactGP(_GPRewardModel):
    """Exact ``SingleTaskGP``; ``max_train`` random points at most (exact GPs scale as N^3)."""

    def __init__(self, max_train: int | None = None, maxiter: int = 200,
                 device: str | torch.device | None = None):
        super().__init__(device)
        check_method_settings(type(self).__name__, {"maxiter": maxiter, "max_train": max_train})
        self._config = {"max_train": max_train, "maxiter": int(maxiter)}

    def _covar_module(self):
        return None  # BoTorch's default

    def _make_gp(self, X: Tensor, Y: Tensor) -> SingleTaskGP:
        covar = self._covar_module()
        kwargs = {} if covar is None else {"covar_module": covar}
        transform = Standardize(m=1, min_stdv=MIN_STD)
        return SingleTaskGP(X, Y, outcome_transform=transform, **kwargs).to(self.device)

    @trains()
    def fit(self, dataset: SequenceDataset, seed: int = 0, progress: bool = False) -> Self:
        """Fit hyperparameters by exact marginal likelihood (L-BFGS, ``maxiter`` steps at most)."""
        X, Y = self._train_data(dataset, seed, self._config["max_train"])
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            self.gp = self._make_gp(X, Y)
            mll = ExactMarginalLogLikelihood(self.gp.likelihood, self.gp)
            # An L-BFGS attempt that ends ABNORMAL (a failed line search, which on a few points can
            # depend on the CPU's rounding) is re-emitted by BoTorch as a warning and then retried from
            # resampled hyperparameters; if every attempt fails it raises ModelFittingError. So the
            # warning of one failed attempt is handled there already, and stays silent here.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"`scipy_minimize` terminated with status "
                                        r"OptimizationStatus\.FAILURE", category=OptimizationWarning)
                fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": self._config["maxiter"]}})
        self._freeze()
        return self

    @property
    def num_train(self) -> int:
        return int(self.gp.train_targets.shape[-1])

    def _checkpoint_tensors(self) -> dict[str, Tensor]:
        tensors = {f"gp.{k}": v for k, v in self.gp.state_dict().items()}
        tensors["train_X"] = self.gp.train_inputs[0]
        # The raw labels: the outcome transform re-standardizes them identically on rebuild.
        tensors["train_Y"] = self.gp.outcome_transform.untransform(
            self.gp.train_targets.unsqueeze(-1))[0]
        return tensors

    def _restore(self, tensors: dict[str, Tensor], fitted: dict[str, Any],
                 path: str | os.PathLike) -> None:
        try:
            self.length, self.vocab_size = fitted["length"], fitted["vocab_size"]
            X, Y = tensors.pop("train_X"), tensors.pop("train_Y")
        except KeyError as err:
            raise CheckpointError(f"{path}: missing {err}") from None
        if X.shape[-1] != self.length * self.vocab_size:
            raise CheckpointError(f"{path}: train_X has {X.shape[-1]} columns, expected L*V")
        self.gp = self._make_gp(X.to(DTYPE), Y.to(DTYPE))
        load_state_strict(self.gp, {k[3:]: v for k, v in tensors.items()}, path)
        self._freeze()


class OneHotGP(_ExactGP):
    """Exact ``SingleTaskGP`` on flattened one-hot with BoTorch's default (ARD RBF) kernel.

    Args:
        max_train: fit on at most this many random training points (None: all). Exact GPs cost
            O(N^3); keep N in the low thousands on CPU.
        maxiter: L-BFGS iteration limit for ``fit_gpytorch_mll``.
        device: torch device (default CUDA if available).
    """


class CategoricalGP(_ExactGP):
    """Exact ``SingleTaskGP`` with a Hamming kernel (per-position lengthscales) on the sequence.

    Equal to BoTorch's ``CategoricalKernel`` on the argmax tokens for hard one-hot input (so
    ``posterior`` on one-hot ``choices`` is the categorical GP), and smooth in soft one-hot for
    ``mean_std``. Same arguments as :class:`OneHotGP`.
    """

    def _covar_module(self):
        return ScaleKernel(OneHotHammingKernel(self.length, self.vocab_size)).to(self.device, DTYPE)


class VariationalGP(_GPRewardModel):
    """Sparse variational GP (``SingleTaskVariationalGP``) with a Hamming kernel and inducing points.

    Trained by ``fit_gpytorch_mll`` on mini-batches (Adam on the variational ELBO), so the cost per
    step is O(batch * M^2) and the full training set (tens of thousands of points) is usable.

    Args:
        num_inducing: M inducing points, initialized at a random subset of the training inputs.
        batch_size: mini-batch size.
        epochs: passes over the data (the step limit is ``epochs * ceil(N / batch_size)``).
        lr: Adam learning rate.
        learn_inducing_points: also optimize the inducing locations.
        device: torch device (default CUDA if available).
    """

    def __init__(self, num_inducing: int = 256, batch_size: int = 512, epochs: int = 10,
                 lr: float = 0.01, learn_inducing_points: bool = True,
                 device: str | torch.device | None = None):
        super().__init__(device)
        check_method_settings(type(self).__name__, {"num_inducing": num_inducing, "batch_size": batch_size,
                                                    "epochs": epochs, "lr": lr})
        self._config = {"num_inducing": int(num_inducing), "batch_size": int(batch_size),
                        "epochs": int(epochs), "lr": float(lr),
                        "learn_inducing_points": bool(learn_inducing_points)}

    def _make_gp(self, X: Tensor, Ys: Tensor, inducing: Tensor | int,
                 outcome_transform: Standardize) -> SingleTaskVariationalGP:
        covar = ScaleKernel(OneHotHammingKernel(self.length, self.vocab_size)).to(self.device, DTYPE)
        gp = SingleTaskVariationalGP(
            X, Ys, covar_module=covar, inducing_points=inducing,
            learn_inducing_points=self._config["learn_inducing_points"]).to(self.device)
        # Set after construction: passing it in makes BoTorch warn that approximate models do not
        # transform training targets; we standardize them ourselves above.
        gp.outcome_transform = outcome_transform.to(self.device)
        return gp

    @trains()
    def fit(self, dataset: SequenceDataset, seed: int = 0, progress: bool = False) -> Self:
        """Maximize the ELBO on mini-batches; ``seed`` fixes initialization and batch order."""
        cfg = self._config
        X, Y = self._train_data(dataset, seed, None)
        n = X.shape[0]
        tf = Standardize(m=1, min_stdv=MIN_STD).to(self.device, DTYPE)
        tf.train()
        Ys, _ = tf(Y)
        tf.eval()
        steps = cfg["epochs"] * -(-n // cfg["batch_size"])
        gen = torch.Generator().manual_seed(seed)
        loader = DataLoader(TensorDataset(X, Ys.squeeze(-1)), batch_size=cfg["batch_size"],
                            shuffle=True, generator=gen)
        bar = progress_bar(total=steps, desc="VariationalGP", progress=progress)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            # A random subset of the training inputs: BoTorch's default allocator (greedy variance
            # reduction) forms an N x N kernel matrix, which is what this model exists to avoid.
            start = X[torch.randperm(n, generator=gen)[:cfg["num_inducing"]]].clone()
            self.gp = self._make_gp(X, Ys, start, tf)
            mll = VariationalELBO(self.gp.likelihood, self.gp.model, num_data=n)
            fit_gpytorch_mll(mll, data_loader=loader, optimizer_kwargs={
                "step_limit": steps, "stopping_criterion": None,
                "optimizer": partial(torch.optim.Adam, lr=cfg["lr"]),
                "callback": lambda *_: bar.update(1)})
        bar.close()
        self._freeze()
        return self

    def posterior(self, X: Tensor, output_indices: list[int] | None = None,
                  observation_noise: bool = False, posterior_transform=None, **kwargs: Any):
        """GPyTorch posterior at ``X (batch..., q, L*V)`` (float64) in label units."""
        if torch.is_grad_enabled() and not self.gp.training:
            # In eval mode the variational strategy caches the Cholesky factor of K(Z, Z) at its first
            # call, but slices K(Z, Z) out of the kernel on [Z; X]: built from an X with a graph, the
            # cache kept that graph, the first backward freed it and every later backward through a
            # prediction failed ("backward through the graph a second time"), which broke reward
            # backprop from its second iteration. A graph-free call fills the cache first (and, once
            # it is filled, costs one point's prediction).
            with torch.no_grad():
                self.gp.posterior(self.gp.model.variational_strategy.inducing_points[..., :1, :])
        return super().posterior(X, output_indices=output_indices, observation_noise=observation_noise,
                                 posterior_transform=posterior_transform, **kwargs)

    def _checkpoint_tensors(self) -> dict[str, Tensor]:
        return {f"gp.{k}": v for k, v in self.gp.state_dict().items()}

    def _restore(self, tensors: dict[str, Tensor], fitted: dict[str, Any],
                 path: str | os.PathLike) -> None:
        key = "gp.model.variational_strategy.inducing_points"
        try:
            self.length, self.vocab_size = fitted["length"], fitted["vocab_size"]
            inducing = tensors[key].to(self.device, DTYPE)
        except KeyError as err:
            raise CheckpointError(f"{path}: missing {err}") from None
        # Shapes only: the inducing points stand in for the (unsaved) training inputs.
        dummy_y = torch.zeros(inducing.shape[0], 1, dtype=DTYPE, device=self.device)
        self.gp = self._make_gp(inducing, dummy_y, inducing.clone(),
                               Standardize(m=1, min_stdv=MIN_STD))
        load_state_strict(self.gp, {k[3:]: v for k, v in tensors.items()}, path)
        self._freeze()
