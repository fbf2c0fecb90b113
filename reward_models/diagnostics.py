"""Held-out calibration diagnostics for reward models, and a reliability plot.

Metrics (all on label units): RMSE, Spearman(mean, y), mean Gaussian NLL, 1σ / 2σ coverage (fraction
of |y - mean| within 1 / 2 predicted std; 0.683 / 0.954 if calibrated) and Spearman(std, |error|)
(does the model know where it is wrong?).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm, spearmanr
from torch import Tensor

from mbo.atomic import atomic_path
from mbo.data.dataset import SequenceDataset
from reward_models.base import RewardModel, dataset_labels

STD_FLOOR = 1e-6  # keeps the NLL finite when a model predicts zero spread


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # undefined for a constant input
    return float(spearmanr(a, b).statistic)


def regression_metrics(mean: Tensor, std: Tensor, y: Tensor) -> dict[str, float]:
    """Metrics from predictions ``mean, std`` and labels ``y``, all ``(N,)``.

    Returns:
        dict with ``rmse, spearman, nll, coverage_1sigma, coverage_2sigma, std_error_spearman,
        mean_std`` (average predicted std) and ``n``.
    """
    if not (mean.shape == std.shape == y.shape) or mean.dim() != 1:
        raise ValueError(f"mean, std, y must all be (N,), got {tuple(mean.shape)}, "
                         f"{tuple(std.shape)}, {tuple(y.shape)}")
    m, s, t = (v.detach().to("cpu", torch.float64).numpy() for v in (mean, std, y))
    s = np.maximum(s, STD_FLOOR)
    err = t - m
    z = np.abs(err) / s
    nll = 0.5 * math.log(2 * math.pi) + np.log(s) + 0.5 * z**2
    return {
        "n": len(t),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "spearman": _spearman(m, t),
        "nll": float(np.mean(nll)),
        "coverage_1sigma": float(np.mean(z <= 1.0)),
        "coverage_2sigma": float(np.mean(z <= 2.0)),
        "std_error_spearman": _spearman(s, np.abs(err)),
        "mean_std": float(np.mean(s)),
    }


def predict(model: RewardModel, dataset: SequenceDataset, observation_noise: bool = False,
            batch_size: int = 2048) -> tuple[Tensor, Tensor]:
    """``model.mean_std`` over ``dataset`` in chunks, without gradients: ``(mean (N,), std (N,))``."""
    means, stds = [], []
    with torch.no_grad():
        for x in dataset.one_hot().split(batch_size):
            m, s = model.mean_std(x, observation_noise=observation_noise)
            means.append(m.detach().cpu().float())
            stds.append(s.detach().cpu().float())
    return torch.cat(means), torch.cat(stds)


def evaluate(model: RewardModel, dataset: SequenceDataset, observation_noise: bool = False,
             batch_size: int = 2048) -> tuple[dict[str, float], tuple[Tensor, Tensor, Tensor]]:
    """:func:`regression_metrics` of ``model`` on labeled ``dataset``.

    Returns:
        ``(metrics, (mean, std, y))`` — the arrays for :func:`reliability_plot`.
    """
    y = dataset_labels(dataset, "evaluate")
    mean, std = predict(model, dataset, observation_noise, batch_size)
    return regression_metrics(mean, std, y), (mean, std, y)


def reliability_curve(mean: Tensor, std: Tensor, y: Tensor, levels: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Expected vs observed coverage of central Gaussian intervals.

    Returns:
        ``(levels, observed)``: for each nominal level p, the fraction of points with
        ``|y - mean| <= z_{(1+p)/2} * std``. A calibrated model lies on the diagonal.
    """
    levels = np.linspace(0.05, 0.95, 19) if levels is None else np.asarray(levels)
    m, s, t = (v.detach().to("cpu", torch.float64).numpy() for v in (mean, std, y))
    z = np.abs(t - m) / np.maximum(s, STD_FLOOR)
    half_width = norm.ppf(0.5 + levels / 2)
    return levels, np.array([np.mean(z <= w) for w in half_width])


def reliability_plot(results: Mapping[str, tuple[Tensor, Tensor, Tensor]],
                     path: str | os.PathLike, title: str | None = None,
                     overwrite: bool = False) -> Path:
    """Write a PNG: left, reliability curves (observed vs nominal coverage) per entry; right,
    mean |error| against predicted-std decile per entry (rising = std tracks error).

    Args:
        results: label -> ``(mean (N,), std (N,), y (N,))``.
        path: the PNG to write (atomic; not replaced unless ``overwrite``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rel, ax_err) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax_rel.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for label, (mean, std, y) in results.items():
        levels, observed = reliability_curve(mean, std, y)
        ax_rel.plot(levels, observed, marker=".", label=label)
        s = std.detach().cpu().double().numpy()
        e = np.abs((y - mean).detach().cpu().double().numpy())
        order = np.argsort(s, kind="stable")
        bins = np.array_split(order, 10)
        ax_err.plot([s[b].mean() for b in bins if len(b)], [e[b].mean() for b in bins if len(b)],
                    marker=".", label=label)
    ax_rel.set(xlabel="nominal coverage", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1),
               title="reliability")
    ax_err.set(xlabel="predicted std (decile mean)", ylabel="mean |error|",
               title="error vs predicted std")
    ax_rel.legend(fontsize=6)
    ax_err.legend(fontsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return Path(path)
