"""Choose the next plate: score a pool of candidate designs with a BoTorch acquisition function.

The pool is sampled from the (fine-tuned) generative model, so every candidate is already on the
model's learned manifold; the acquisition only ranks it. Designs that were already measured never
come back, and a minimum Hamming distance between chosen designs keeps the plate diverse.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import torch
from botorch.acquisition import qLogNoisyExpectedImprovement, qUpperConfidenceBound
from botorch.generation.sampling import MaxPosteriorSampling
from botorch.models.ensemble import EnsembleModel
from botorch.optim import optimize_acqf_discrete
from torch import Tensor

from mbo.data.alphabet import check_tokens

Acquisition = Literal["ucb", "lognei", "thompson"]
ACQUISITIONS = ("ucb", "lognei", "thompson")


@dataclass(frozen=True)
class Selection:
    """A chosen batch, in the order it was picked.

    Attributes:
        tokens: LongTensor ``(q, L)``.
        acquisition: the acquisition value of each design when it was picked ``(q,)``: the joint
            value of the plate so far while that still grows, then the design's own value (see
            :func:`select_batch`). NaN for Thompson sampling.
        mean, std: the reward model's posterior mean and std of each design ``(q,)``.
        pool_size: distinct, unmeasured candidates the batch was chosen from.
    """

    tokens: Tensor
    acquisition: Tensor
    mean: Tensor
    std: Tensor
    pool_size: int


def _one_hot_flat(tokens: Tensor, vocab_size: int) -> Tensor:
    return torch.nn.functional.one_hot(tokens.long(), vocab_size).flatten(1).float()


class PoolEnsemble(EnsembleModel):
    """An ensemble's predictions on a finite pool, as a BoTorch model whose input is the pool index.

    A q-batch acquisition with pending points re-evaluates the network on ``P × (1 + pending)``
    designs per pick, ``O(P q²)`` forward passes per plate (minutes and gigabytes for a plate of
    100 from a pool of 1,000). Ensemble members are deterministic, so their predictions are computed
    once and looked up: the acquisition values are identical and the plate takes seconds.

    Args:
        member_predictions: ``(K, P)`` member outputs in label units, or ``(K, P, M)`` for ``M``
            objectives (one ensemble of ``K`` members per objective, members paired by index).
    """

    def __init__(self, member_predictions: Tensor):
        super().__init__()
        values = member_predictions.detach()
        self.values = values.unsqueeze(-1) if values.dim() == 2 else values  # (K, P, M)
        self._num_outputs = self.values.shape[-1]

    def forward(self, X: Tensor) -> Tensor:
        """``X (batch..., q, 1)`` pool indices -> ``(batch..., K, q, M)``."""
        out = self.values[:, X.squeeze(-1).long()]  # (K, batch..., q, M)
        return out.movedim(0, -3)


def unmeasured(pool: Tensor, exclude: Tensor | None) -> Tensor:
    """The distinct rows of ``pool (P, L)`` that are not rows of ``exclude (M, L)``, in first-seen order."""
    seen = set() if exclude is None else {tuple(r) for r in exclude.tolist()}
    keep = []
    for i, row in enumerate(pool.tolist()):
        key = tuple(row)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return pool[torch.tensor(keep, dtype=torch.long)]


def select_batch(
    model,
    pool: Tensor,
    q: int,
    *,
    vocab_size: int,
    acquisition: Acquisition = "ucb",
    beta: float = 1.0,
    exclude: Tensor | None = None,
    baseline: Tensor | None = None,
    min_distance: int = 1,
    seed: int = 0,
) -> Selection:
    """Pick ``q`` designs from ``pool`` with a BoTorch acquisition function.

    Args:
        model: a fitted reward model (``reward_models``: a BoTorch ``Model`` over flattened one-hot
            ``(..., q, L*V)`` with ``mean_std``).
        pool: candidate designs, LongTensor ``(P, L)``; duplicates and measured designs are dropped.
        q: batch size; fewer are returned only if the pool runs out.
        vocab_size: V.
        acquisition: ``"ucb"`` (qUCB; ``beta = c²`` gives mean + c·std, ``beta = 0`` is greedy),
            ``"lognei"`` (qLogNEI against ``baseline``), or ``"thompson"`` (``MaxPosteriorSampling``
            without replacement).
        beta: qUCB's exploration weight.
        exclude: LongTensor ``(M, L)`` of designs already measured (or suggested) to leave out.
        baseline: LongTensor ``(M, L)`` of measured designs, qLogNEI's ``X_baseline`` (required there).
        min_distance: chosen designs differ pairwise in at least this many positions (1 = distinct).
            Applied greedily for qUCB/qLogNEI; Thompson picks are only kept distinct.

    qUCB and qLogNEI build the plate greedily with ``optimize_acqf_discrete``, each pick conditioned
    on the picks before it (``X_pending``). With an ensemble's few members the joint value stops
    growing after a handful of picks; from then on the remaining picks are ranked by their own
    (single-design) acquisition value, still subject to ``min_distance``.
        seed: seeds the acquisition's Monte Carlo samples.

    Returns:
        A :class:`Selection`.
    """
    if acquisition not in ACQUISITIONS:
        raise ValueError(f"unknown acquisition {acquisition!r}; choose one of {ACQUISITIONS}")
    if q < 1:
        raise ValueError(f"batch size q must be >= 1, got {q}")
    # qUCB takes sqrt(beta): a negative one fails inside BoTorch, a NaN one ranks nothing.
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"select_batch: beta must be a finite number >= 0, got {beta!r}")
    pool = check_tokens(pool, vocab_size, "select_batch: pool")
    if baseline is not None and len(baseline):
        baseline = check_tokens(baseline, vocab_size, "select_batch: baseline")
    cand = unmeasured(pool, exclude)
    if len(cand) == 0:
        raise ValueError("every candidate in the pool was already measured; sample a larger pool")
    X = _one_hot_flat(cand, vocab_size)
    X_base = None if baseline is None or len(baseline) == 0 else _one_hot_flat(baseline, vocab_size)
    if hasattr(model, "member_predictions"):
        # Index space: the candidates, then the baseline designs (qLogNEI's incumbents).
        X_all = X if X_base is None else torch.cat([X, X_base])
        with torch.no_grad():
            members = model.member_predictions(X_all.reshape(len(X_all), -1, vocab_size))
        acq_model = PoolEnsemble(members)
        index = torch.arange(len(X_all), dtype=X.dtype).unsqueeze(1)
        choices, X_base = index[: len(cand)], None if X_base is None else index[len(cand):]
    else:
        acq_model, choices = model, X
    picked: list[int] = []
    values: list[float] = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if acquisition == "thompson":
            sampler = MaxPosteriorSampling(acq_model, replacement=False)
            chosen = sampler(choices, num_samples=min(q, len(cand))).detach().cpu()
            index = {tuple(r): i for i, r in enumerate(choices.tolist())}
            picked = [index[tuple(r)] for r in chosen.tolist()]
            values = [float("nan")] * len(picked)
        else:
            if acquisition == "ucb":
                acqf = qUpperConfidenceBound(acq_model, beta=beta)
            else:
                if X_base is None:
                    raise ValueError("acquisition 'lognei' needs the measured designs as baseline")
                acqf = qLogNoisyExpectedImprovement(acq_model, X_baseline=X_base)
            available = torch.ones(len(cand), dtype=torch.bool)
            batch_value, saturated = -math.inf, False
            while len(picked) < q and available.any():
                idx = available.nonzero().squeeze(1)
                acqf.set_X_pending(choices[picked] if picked and not saturated else None)
                best, value = optimize_acqf_discrete(acqf, q=1, choices=choices[idx])
                if picked and not saturated and float(value) <= batch_value + 1e-6 * abs(batch_value):
                    # The batch value has saturated (with K ensemble members, once each member's
                    # best design is on the plate, nothing adds to E[max]): every further pick by
                    # joint value would be arbitrary, so rank the rest by their own value.
                    saturated = True
                    continue
                i = int(idx[(choices[idx] == best).all(dim=1)][0])
                picked.append(i)
                values.append(float(value))
                batch_value = float(value)
                # Greedy diversity: drop every candidate too close to the one just picked.
                available &= (cand != cand[i]).sum(dim=1) >= min_distance
    picked_t = torch.tensor(picked, dtype=torch.long)
    with torch.no_grad():
        mean, std = model.mean_std(X[picked_t].reshape(len(picked), -1, vocab_size))
    return Selection(tokens=cand[picked_t], acquisition=torch.tensor(values), mean=mean.detach().cpu(),
                     std=std.detach().cpu(), pool_size=len(cand))
