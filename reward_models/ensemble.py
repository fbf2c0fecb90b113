"""Deep and bootstrap ensembles of small MLPs over one-hot sequences, as BoTorch ``EnsembleModel``s.

``mean_std`` gives the member mean and the member std (the epistemic spread BRAID-Boot penalizes);
``member_predictions`` gives the K member outputs for min / low-quantile conservative rewards.
All K members train together in one vectorized pass (see :class:`EnsembleMLP`).
"""

from __future__ import annotations

import os
from typing import Any, Self

import torch
from botorch.models.ensemble import EnsembleModel
from botorch.models.transforms.outcome import Standardize
from torch import Tensor

from mbo.caller_state import trains
from mbo.checkpoint import CheckpointError, load_state_strict
from mbo.data.dataset import SequenceDataset
from mbo.device import resolve_device
from mbo.method_settings import check_method_settings
from mbo.progress import progress_bar
from reward_models.base import MIN_STD, RewardModel, dataset_labels
from reward_models.networks import EnsembleCNN, EnsembleMLP, conv_dilations


class DeepEnsemble(RewardModel, EnsembleModel):
    """K independently initialized MLPs, each trained on all the data in its own random order.

    Args:
        num_members: K (>= 2 for a non-zero std).
        hidden_dims: MLP hidden widths; the last is the feature size used by ``FeatureBonus``.
        conv_channels: if given, each member is a CNN (:class:`EnsembleCNN`: these convolutions,
            a max over positions, then the MLP head) instead of an MLP on the flat one-hot. Use it
            when the objective rewards patterns wherever they occur (motifs).
        kernel_size: width of the convolutions.
        dilations: one per convolution (default, or None: all 1); see :class:`EnsembleCNN` for the receptive
            field they give.
        epochs: passes over the (per-member) training set.
        min_steps: at least this many optimizer steps, with more epochs if need be. A fixed count of
            epochs leaves a model fitted to few labels nearly untrained (100 labels in batches of 128
            are one step an epoch), which is what an active-learning campaign fits in its first
            rounds.
        batch_size: mini-batch size per member.
        lr: Adam learning rate.
        weight_decay: Adam L2 penalty.
        device: where to train and predict (default: CUDA if available, else CPU).
    """

    bootstrap: bool = False

    def __init__(self, num_members: int = 5, hidden_dims: tuple[int, ...] | list[int] = (64, 64),
                 epochs: int = 50, batch_size: int = 128, lr: float = 1e-3,
                 weight_decay: float = 1e-4, conv_channels: tuple[int, ...] | list[int] = (),
                 kernel_size: int = 5, dilations: tuple[int, ...] | list[int] | None = None,
                 min_steps: int = 0, device: str | torch.device | None = None):
        EnsembleModel.__init__(self)
        if num_members < 2:
            raise ValueError(f"{type(self).__name__} needs num_members >= 2, got {num_members}")
        if min_steps < 0:
            raise ValueError(f"{type(self).__name__} needs min_steps >= 0, got {min_steps}")
        # Refused when built, so mbo-run refuses them before pretraining (batch_size=0 failed in fit).
        check_method_settings(type(self).__name__, {
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "hidden_dims": list(hidden_dims), "conv_channels": list(conv_channels),
            "kernel_size": kernel_size})
        conv_dilations(dilations, len(conv_channels), type(self).__name__)  # refused here, before any fit
        if conv_channels and kernel_size % 2 == 0:  # the padding that keeps the length needs an odd width
            raise ValueError(f"{type(self).__name__} needs an odd kernel_size, got {kernel_size}")
        self._config = {"num_members": int(num_members), "hidden_dims": [int(h) for h in hidden_dims],
                        "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
                        "weight_decay": float(weight_decay),
                        "conv_channels": [int(c) for c in conv_channels], "kernel_size": int(kernel_size),
                        "dilations": [int(d) for d in dilations or ()], "min_steps": int(min_steps)}
        self.device = resolve_device(device)
        self.net: EnsembleMLP | EnsembleCNN | None = None
        # Members learn standardized labels; BoTorch's posterior() and mean_std() both un-standardize
        # through this one transform. Its statistics are computed in float64 (a float32 sum of squares
        # overflows past |y| ~ 1e19), and any positive spread is used (BoTorch's default only
        # de-means labels whose std is below 1e-8, so labels in units of 1e-9 would not be scaled).
        self.outcome_transform = Standardize(m=1, min_stdv=MIN_STD).to(self.device)
        # Label-noise variance in standardized units, used only for observation_noise=True.
        self.register_buffer("noise_var", torch.zeros((), device=self.device))

    @property
    def num_members(self) -> int:
        return self._config["num_members"]

    def _build(self, length: int, vocab_size: int) -> None:
        self.length, self.vocab_size = int(length), int(vocab_size)
        cfg = self._config
        if cfg.get("conv_channels"):
            net = EnsembleCNN(self.num_members, length, vocab_size, tuple(cfg["conv_channels"]),
                              cfg["kernel_size"], tuple(cfg["hidden_dims"]),
                              tuple(cfg.get("dilations") or ()))
        else:
            net = EnsembleMLP(self.num_members, length * vocab_size, tuple(cfg["hidden_dims"]))
        # float32 members (see _net_input), also under torch.set_default_dtype(torch.float64), where
        # they were built in float64 and training on the float32 one-hots failed.
        self.net = net.to(self.device, torch.float32)

    # ------------------------------------------------------------------ training
    @trains()
    def fit(self, dataset: SequenceDataset, seed: int = 0, progress: bool = False) -> Self:
        """Train all members at once on ``dataset`` (labels ``(N,)``); returns ``self``.

        ``seed`` fixes initialization, data order and bootstrap resamples (global RNG untouched).
        """
        where = f"{type(self).__name__}.fit"
        y = dataset_labels(dataset, where).to(self.device)
        X = dataset.one_hot().flatten(1).to(self.device)
        n, k = X.shape[0], self.num_members
        self.outcome_transform.train()
        ys = self.outcome_transform.double()(y.double().unsqueeze(-1))[0].squeeze(-1).float()
        self.outcome_transform.float()
        cfg = self._config
        gen = torch.Generator(device="cpu").manual_seed(seed)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            self._build(dataset.length, dataset.alphabet.size)
        # Each member's training set as row indices into X: all rows, or a resample with replacement.
        if self.bootstrap:
            member_rows = torch.randint(n, (k, n), generator=gen)
        else:
            member_rows = torch.arange(n).expand(k, n)
        member_rows = member_rows.to(self.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        bs = min(cfg["batch_size"], n)
        epochs = max(cfg["epochs"], -(-cfg["min_steps"] // (n // bs)))  # n // bs full batches an epoch
        self.train()
        for _ in progress_bar(range(epochs), desc=type(self).__name__, progress=progress):
            order = torch.rand(k, n, generator=gen).argsort(dim=1).to(self.device)
            for start in range(0, n - bs + 1, bs):
                rows = member_rows.gather(1, order[:, start:start + bs])  # (K, B)
                pred = self.net(X[rows])  # (K, B)
                # Sum over members: each member's gradient is that of its own mean loss.
                loss = (pred - ys[rows]).pow(2).mean(dim=1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.eval()
        with torch.no_grad():
            self.noise_var.copy_(self._residual_variance(X, ys, member_rows))
        return self

    def _residual_variance(self, X: Tensor, ys: Tensor, member_rows: Tensor) -> Tensor:
        """Label-noise estimate: mean squared residual of the ensemble mean minus its spread.

        For bootstrap members only out-of-bag predictions are used (an honest held-out residual);
        a deep ensemble has no held-out rows, so its estimate is optimistic (training residual).
        """
        preds = self.net(X)  # (K, N)
        if self.bootstrap:
            in_bag = torch.zeros_like(preds, dtype=torch.bool)
            in_bag.scatter_(1, member_rows, True)
            oob = (~in_bag).float()
            has_oob = oob.sum(0) > 0
            if has_oob.any():
                mean = (preds * oob).sum(0)[has_oob] / oob.sum(0)[has_oob]
                return (ys[has_oob] - mean).pow(2).mean()
        resid = (ys - preds.mean(0)).pow(2).mean()
        return (resid - preds.var(0).mean()).clamp_min(0.0)

    # ------------------------------------------------------------------ predictions
    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(K, N, H)`` of float one-hot ``x (N, L, V)`` (differentiable)."""
        self._check_onehot(x)
        return self.net.features(self._net_input(x.flatten(1)))

    def member_predictions(self, x: Tensor) -> Tensor:
        """Member outputs ``(K, N)`` in label units for float one-hot ``x (N, L, V)``."""
        self._check_onehot(x)
        return self._untransform(self.net(self._net_input(x.flatten(1)))).to(x.dtype)

    def _net_input(self, x: Tensor) -> Tensor:
        # The members compute in their own dtype (float32); BoTorch's acquisition optimizers hand
        # float64, so inputs are cast here and results cast back to the caller's dtype.
        return x.to(self.device, next(self.net.parameters()).dtype)

    def _untransform(self, values: Tensor) -> Tensor:
        return self.outcome_transform.untransform(values.unsqueeze(-1))[0].squeeze(-1)

    @property
    def label_std(self) -> Tensor:
        """The standard deviation of the training labels (the outcome transform's scale), ``()``."""
        return self.outcome_transform.stdvs.reshape(())

    def mean_std(self, x: Tensor, observation_noise: bool = False) -> tuple[Tensor, Tensor]:
        """Member mean and (unbiased) member std, each ``(N,)``; see :meth:`RewardModel.mean_std`."""
        self._check_onehot(x)
        # The spread in standardized units, then scaled: a variance in label units overflows float32
        # for labels past ~1e19.
        preds = self.net(self._net_input(x.flatten(1)))  # (K, N)
        # torch warns of var() over K members of N = 0 rows ("degrees of freedom <= 0").
        var = preds.var(dim=0) if preds.shape[1] else preds.new_zeros(0)
        if observation_noise:
            var = var + self.noise_var
        return self._untransform(preds.mean(dim=0)).to(x.dtype), (var.sqrt() * self.label_std).to(x.dtype)

    def forward(self, X: Tensor) -> Tensor:
        """``X (batch..., q, L*V)`` -> standardized member values ``(batch..., K, q, 1)``
        (``posterior`` un-standardizes them through ``outcome_transform``)."""
        self._check_flat(X)
        batch = X.shape[:-1]
        out = self.net(self._net_input(X.reshape(-1, X.shape[-1]))).to(X.dtype)
        out = out.reshape(self.num_members, *batch)  # (K, batch..., q)
        return out.movedim(0, -2).unsqueeze(-1)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_tensors(self) -> dict[str, Tensor]:
        return dict(self.state_dict())

    def _restore(self, tensors: dict[str, Tensor], fitted: dict[str, Any],
                 path: str | os.PathLike) -> None:
        try:
            self._build(fitted["length"], fitted["vocab_size"])
        except KeyError as err:
            raise CheckpointError(f"{path}: config lacks fitted shape {err}") from None
        load_state_strict(self, tensors, path)


class BootstrapEnsemble(DeepEnsemble):
    """Like :class:`DeepEnsemble`, but member k trains on its own resample (with replacement) of the
    data; its label-noise estimate uses out-of-bag residuals. Same arguments."""

    bootstrap = True
