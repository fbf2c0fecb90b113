"""Metrics of a set of designs: true score, model belief, over-optimization, novelty, diversity, naturalness.

Every function takes designs as LongTensor ``(N, L)``; :func:`evaluate_designs` gathers them into one
flat dict (for ``metrics.json``) and :func:`per_design` into per-row columns (for ``designs.csv``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mbo.data.alphabet import one_hot


def hamming_to_nearest(designs: Tensor, reference: Tensor, vocab_size: int,
                       chunk: int = 8192) -> Tensor:
    """Hamming distance ``(N,)`` from each design ``(N, L)`` to its nearest row of ``reference (M, L)``."""
    if not len(reference):  # there is no nearest row
        raise ValueError("hamming_to_nearest: reference has no rows")
    length = designs.shape[1]
    x = one_hot(designs, vocab_size).flatten(1)
    best = torch.full((designs.shape[0],), -1.0)
    for start in range(0, reference.shape[0], chunk):
        ref = one_hot(reference[start:start + chunk], vocab_size).flatten(1)
        best = torch.maximum(best, (x @ ref.T).max(1).values)  # matches = L − Hamming
    return length - best


def mean_pairwise_hamming(designs: Tensor) -> float:
    """Mean Hamming distance over distinct pairs of designs ``(N, L)``; 0 for fewer than two."""
    n = designs.shape[0]
    if n < 2:
        return 0.0
    # From letter counts per position, not the (N, N, L) comparison: O(N·L) memory, where that one
    # needed ~9·N²·L bytes (9 GB at N = 2,000, L = 250). Ordered pairs differing at a position: n² − Σ_v c².
    counts = torch.zeros(designs.shape[1], int(designs.max()) + 1, dtype=torch.float64)
    counts.scatter_add_(1, designs.T.long(), torch.ones(designs.T.shape, dtype=torch.float64))
    return ((n * n * designs.shape[1] - counts.square().sum()) / (n * (n - 1))).item()


def percentiles(scores: Tensor) -> dict[str, float]:
    """The 100th and 50th percentile of (normalized) scores, as Design-Bench reports them, but for one
    detail: with an even count p50 is the lower of the two middle values (``torch.median``), where
    Design-Bench's ``np.percentile`` takes their mean, so it is never above Design-Bench's. Every figure
    of the project is this one. Infeasible designs (−inf/NaN) count as the worst, so a method is never
    rewarded for dropping them."""
    if not scores.numel():
        raise ValueError("percentiles: no scores")
    s = scores.double().nan_to_num(nan=-math.inf, neginf=-math.inf, posinf=math.inf)
    return {"p100": s.max().item(), "p50": s.median().item()}


@torch.no_grad()
def evaluate_designs(designs: Tensor, task=None, reward_model=None, reward=None, offline=None,
                     diffusion=None, elbo_samples: int = 8) -> dict[str, float]:
    """Summary metrics of ``designs (N, L)``; each input is optional and adds its own metrics
    (``reward_model`` and ``reward`` read one-hot ``(N, L, V)``, so they need ``task`` or ``offline``
    for the alphabet).

    Args:
        task: a Task with an oracle -> ``true_p100``, ``true_p50`` (infeasible designs count as the
            worst), ``true_mean`` (over the feasible designs only: −inf would swamp it) and
            ``feasible`` (their fraction).
        reward_model: has ``mean_std`` -> ``pred_mean``, ``pred_std`` and, with an oracle,
            ``overopt_gap`` (mean predicted − mean true, on feasible designs).
        reward: a (conservative) reward callable -> ``reward_mean``.
        offline: the offline SequenceDataset -> ``novelty`` (mean Hamming to nearest offline
            sequence) and ``frac_in_offline``.
        diffusion: the pretrained MaskedDiffusion -> ``naturalness`` (mean ELBO, nats per sequence).
    """
    if not len(designs):
        raise ValueError("evaluate_designs: no designs")
    # The alphabet comes from the task or the offline data; only the one-hot metrics need it, so
    # designs with just a diffusion model (naturalness) or nothing else (n, unique, diversity) work.
    alphabet = task.alphabet if task is not None else offline.alphabet if offline is not None else None
    if alphabet is None and (reward_model is not None or reward is not None):
        raise ValueError("evaluate_designs: reward_model and reward need a task or offline data "
                         "for the alphabet")
    vocab = None if alphabet is None else alphabet.size
    x = None if vocab is None else one_hot(designs, vocab)
    out: dict[str, float] = {"n": designs.shape[0], "unique": len({tuple(r) for r in designs.tolist()}),
                             "diversity": mean_pairwise_hamming(designs)}
    true = None
    if task is not None and task.has_oracle:
        true = task.oracle(designs).double()
        feasible = torch.isfinite(true)
        out.update({f"true_{k}": v for k, v in percentiles(true).items()})
        out["true_mean"] = true[feasible].mean().item() if feasible.any() else -math.inf
        out["feasible"] = feasible.double().mean().item()
    if reward_model is not None:
        # On the model's device (a GPU with device=cuda); the oracle's scores are on the CPU.
        mean, std = (t.cpu() for t in reward_model.mean_std(x))
        out.update(pred_mean=mean.mean().item(), pred_std=std.mean().item())
        if true is not None and feasible.any():
            out["overopt_gap"] = (mean.double()[feasible] - true[feasible]).mean().item()
    if reward is not None:
        out["reward_mean"] = reward(x).mean().item()
    if offline is not None:
        dist = hamming_to_nearest(designs, offline.tokens, vocab)
        out.update(novelty=dist.mean().item(), frac_in_offline=(dist == 0).double().mean().item())
    if diffusion is not None:
        # A fixed stream: the same designs get the same estimate in every row and every run, and the
        # evaluation draws nothing from the caller's generators.
        device = _device(diffusion)
        out["naturalness"] = diffusion.elbo(designs.to(device), n_samples=elbo_samples,
                                            generator=torch.Generator(device).manual_seed(0)).mean().item()
    return out


@torch.no_grad()
def per_design(designs: Tensor, task=None, reward_model=None, reward=None) -> dict[str, list[float]]:
    """Per-design columns: ``pred_mean``, ``pred_std``, ``conservative``, ``true_score``."""
    vocab = task.alphabet.size
    x = one_hot(designs, vocab)
    cols: dict[str, list[float]] = {}
    if reward_model is not None:
        mean, std = reward_model.mean_std(x)
        cols.update(pred_mean=mean.tolist(), pred_std=std.tolist())
    if reward is not None:
        cols["conservative"] = reward(x).tolist()
    if task is not None and task.has_oracle:
        cols["true_score"] = task.oracle(designs).tolist()
    return cols


def _device(module) -> torch.device:
    return next(module.parameters()).device
