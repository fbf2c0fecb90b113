"""The linear (neural-tangent-style) uncertainty bonus on a trained net's penultimate features.

``bonus(x) = sqrt(φ(x)ᵀ (Σ_i φ(x_i) φ(x_i)ᵀ + λ I)⁻¹ φ(x))`` with ``x_i`` the training inputs: small
where the features of ``x`` lie in the span the data covered, large in directions the data never
excited. As a reward model it is (mean of the net, ``scale * bonus``).
"""

from __future__ import annotations

import os
from typing import Any, Self

import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from torch import Tensor, nn

from mbo.caller_state import trains
from mbo.checkpoint import CheckpointError, load_state_strict
from mbo.data.dataset import SequenceDataset
from mbo.device import resolve_device
from reward_models.base import RewardModel, dataset_labels
from reward_models.ensemble import DeepEnsemble


class FeatureBonus(RewardModel):
    """Mean from a trained net, std from the linear feature bonus.

    Args:
        model_or_net: a :class:`DeepEnsemble` / :class:`BootstrapEnsemble` (its features are the
            members' penultimate layers concatenated, ``K*H`` dims; its mean is the ensemble mean;
            fitted on the dataset first if not fitted yet), or any ``nn.Module`` with
            ``features(x (N, L, V)) -> (N, H)`` and ``forward(x (N, L, V)) -> (N,)`` in label
            units (already trained). Only the ensemble form can be saved.
        lam: ridge λ > 0.
        scale: multiplies the bonus to give a std in label units; :meth:`calibrate` fits it.
        device: torch device (default CUDA if available).
    """

    def __init__(self, model_or_net: nn.Module | None = None, lam: float = 1.0, scale: float = 1.0,
                 device: str | torch.device | None = None):
        Model.__init__(self)
        if lam <= 0:
            raise ValueError(f"FeatureBonus needs lam > 0, got {lam}")
        self._config = {"lam": float(lam)}
        self.device = resolve_device(device)
        self.net = model_or_net
        self.register_buffer("scale", torch.tensor(float(scale), device=self.device))
        self.register_buffer("precision_inv", torch.zeros(0, 0, dtype=torch.float64,
                                                          device=self.device))

    def _features(self, x: Tensor) -> Tensor:
        """``φ(x)``: ``(N, F)``."""
        feats = self.net.features(x)
        if isinstance(self.net, DeepEnsemble):  # (K, N, H) -> (N, K*H)
            feats = feats.transpose(0, 1).flatten(1)
        return feats

    def _net_mean(self, x: Tensor) -> Tensor:
        if isinstance(self.net, DeepEnsemble):
            return self.net.mean_std(x)[0]
        return self.net(x)

    @trains()
    def fit(self, dataset: SequenceDataset, seed: int = 0, progress: bool = False) -> Self:
        """Accumulate ``Σ φφᵀ + λI`` over ``dataset``'s inputs (training the ensemble first if
        it is not fitted); returns ``self``."""
        if self.net is None:
            raise ValueError("FeatureBonus.fit: no model_or_net to take features from")
        if isinstance(self.net, DeepEnsemble) and not self.net.is_fitted:
            self.net.fit(dataset, seed=seed, progress=progress)
        self.length, self.vocab_size = dataset.length, dataset.alphabet.size
        x = dataset.one_hot().to(self.device)
        with torch.no_grad():
            phi = torch.cat([self._features(chunk) for chunk in x.split(8192)]).to(torch.float64)
        precision = phi.T @ phi + self._config["lam"] * torch.eye(phi.shape[1], dtype=phi.dtype,
                                                                  device=phi.device)
        self.precision_inv = torch.linalg.inv(precision)
        return self

    def bonus(self, x: Tensor) -> Tensor:
        """``sqrt(φᵀ A⁻¹ φ)`` ``(N,)`` for float one-hot ``x (N, L, V)``; differentiable."""
        self._check_onehot(x)
        phi = self._features(x).to(torch.float64)
        quad = ((phi @ self.precision_inv) * phi).sum(-1)
        return quad.clamp_min(1e-18).sqrt().to(x.dtype)

    def mean_std(self, x: Tensor, observation_noise: bool = False) -> tuple[Tensor, Tensor]:
        """(net mean, ``scale * bonus``), each ``(N,)``. ``observation_noise`` adds the wrapped
        ensemble's label-noise estimate (zero for a plain net)."""
        mean = self._net_mean(x)
        std = self.scale * self.bonus(x)
        if observation_noise and isinstance(self.net, DeepEnsemble):
            std = (std.pow(2) + self.net.noise_var * self.net.label_std**2).sqrt()
        return mean, std

    def calibrate(self, dataset: SequenceDataset) -> Self:
        """Set ``scale`` to its Gaussian maximum-likelihood value on held-out ``dataset``:
        ``scale² = mean((y - mean)² / bonus²)``. Use data the net did not train on."""
        y = dataset_labels(dataset, "FeatureBonus.calibrate").to(self.device)
        x = dataset.one_hot().to(self.device)
        with torch.no_grad():
            mean = torch.cat([self._net_mean(c) for c in x.split(8192)])
            b = torch.cat([self.bonus(c) for c in x.split(8192)])
            self.scale.copy_(((y - mean).pow(2) / b.pow(2)).mean().sqrt())
        return self

    def posterior(self, X: Tensor, output_indices: list[int] | None = None,
                  observation_noise: bool = False, posterior_transform=None,
                  **kwargs: Any) -> GPyTorchPosterior:
        """Independent Gaussians ``N(mean, std²)`` at ``X (batch..., q, L*V)``."""
        self._check_flat(X)
        batch = X.shape[:-1]
        x = X.reshape(-1, self.length, self.vocab_size)
        mean, std = self.mean_std(x, observation_noise=bool(observation_noise))
        mean, var = mean.reshape(batch), std.pow(2).clamp_min(1e-12).reshape(batch)
        post = GPyTorchPosterior(MultivariateNormal(mean, DiagLinearOperator(var)))
        if posterior_transform is not None:
            return posterior_transform(post)
        return post

    # ------------------------------------------------------------------ checkpoints
    def _fitted_config(self) -> dict[str, Any]:
        if not isinstance(self.net, DeepEnsemble):
            raise TypeError("FeatureBonus.save: only a wrapped DeepEnsemble / "
                                      "BootstrapEnsemble can be saved, not a custom nn.Module")
        return {**super()._fitted_config(), "inner_kind": type(self.net).__name__,
                "inner_init": self.net.config, "inner_fitted": self.net._fitted_config()}

    def _checkpoint_tensors(self) -> dict[str, Tensor]:
        return dict(self.state_dict())

    def _restore(self, tensors: dict[str, Tensor], fitted: dict[str, Any],
                 path: str | os.PathLike) -> None:
        from reward_models import MODEL_CLASSES

        try:
            self.length, self.vocab_size = fitted["length"], fitted["vocab_size"]
            inner_cls = MODEL_CLASSES[fitted["inner_kind"]]
            inner = inner_cls(**fitted["inner_init"], device=self.device)
            inner._restore({k[4:]: v for k, v in tensors.items() if k.startswith("net.")},
                           fitted["inner_fitted"], path)
        except KeyError as err:
            raise CheckpointError(f"{path}: FeatureBonus config lacks {err}") from None
        self.net = inner
        self.precision_inv = tensors["precision_inv"].clone()
        load_state_strict(self, tensors, path)
