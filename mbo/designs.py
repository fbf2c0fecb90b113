"""Designs a lab can order: distinct, new, ranked, named.

A sampler can return the same sequence twice, or a sequence the lab already measured. A plate wants
neither, so :func:`unique_designs` keeps drawing until it has the designs asked for (or gives up and
says how many it found), and :func:`ranked` orders them by the score the method optimized.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from mbo.atomic import atomic_path
from mbo.config import SettingsError


def check_design_space(n: int, vocab_size: int, length: int, excluded: Tensor | None) -> None:
    """Refuse ``n`` designs where fewer sequences of ``length`` over ``vocab_size`` letters exist than
    ``n`` once those of ``excluded (N, L)`` (the offline data; None: none) are left out: sampling would
    never find them."""
    space = vocab_size ** length
    if n <= space - (0 if excluded is None else len(excluded)):
        return
    seen = 0 if excluded is None else len(excluded.unique(dim=0))  # counted only here: a sort
    if n > space - seen:
        offline = f", {seen:,} of them in the offline data" if seen else ""
        fix = "lower n_designs" + (" or set include_offline=true" if seen else "")
        raise SettingsError(f"n_designs={n:,}, but only {space:,} sequences of length {length} over "
                            f"{vocab_size} letters exist{offline}: {fix}")


def unique_designs(sample: Callable[[int], Tensor], n: int, exclude: Tensor | None = None,
                   max_draws: int = 50, accept: Callable[[Tensor], Tensor] | None = None,
                   rejected: list[int] | None = None, patience: int = 3) -> tuple[Tensor, int]:
    """Up to ``n`` distinct designs, none a row of ``exclude``, each passing ``accept``.

    Args:
        sample: draws ``k`` designs, LongTensor ``(k, L)``.
        n: designs wanted.
        exclude: LongTensor ``(M, L)`` of sequences never to return (e.g. the offline data).
        max_draws: stop after this many calls of ``sample(n)``.
        patience: stop sooner, after this many calls in a row whose accepted designs were all seen
            already (a sampler collapsed onto a few sequences will not find more).
        accept: ``(k, L) -> bool (k,)``, e.g. :meth:`mbo.constraints.Constraints.satisfied`; a design
            it refuses is never returned.
        rejected: if given, a one-element list that receives the number of draws ``accept`` refused.

    Returns:
        ``(designs, drawn)``: LongTensor ``(m, L)`` with ``m <= n`` distinct new designs in the order
        they were first drawn, and the number of designs sampled to get them.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seen = set() if exclude is None else {tuple(r) for r in exclude.tolist()}
    kept: list[Tensor] = []
    length = 0 if exclude is None or exclude.dim() != 2 else exclude.shape[1]
    drawn = 0
    refused = 0
    stale = 0
    for _ in range(max_draws):
        batch = sample(n).cpu()
        drawn += len(batch)
        length = batch.shape[-1]
        if accept is not None:
            ok = accept(batch)
            refused += int((~ok).sum())
            if rejected is not None:
                rejected[:] = [refused]
            batch = batch[ok]
        before = len(kept)
        for row in batch:
            key = tuple(row.tolist())
            if key not in seen:
                seen.add(key)
                kept.append(row)
                if len(kept) == n:
                    return torch.stack(kept), drawn
        # A draw the constraints refused whole says nothing about repeats: rare passes are worth the
        # remaining draws.
        if len(batch):
            stale = stale + 1 if len(kept) == before else 0
        if stale >= patience:
            break
    return (torch.stack(kept) if kept else torch.empty(0, length, dtype=torch.long)), drawn


def ranked(designs: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
    """``designs (N, L)`` and ``score (N,)`` sorted by score, best first (ties keep their order).

    ``-inf`` (infeasible) ranks last; a NaN score is refused (ValueError): a descending sort would
    rank it first."""
    score = torch.as_tensor(score)
    if score.shape != (len(designs),):
        raise ValueError(f"ranked: score must be ({len(designs)},), one per design, got {tuple(score.shape)}")
    if bool(torch.isnan(score).any()):
        raise ValueError(f"ranked: score is NaN for {int(torch.isnan(score).sum())} of {len(score)} designs")
    order = torch.sort(score, descending=True, stable=True).indices
    return designs[order], score[order]


def design_ids(n: int, prefix: str = "design") -> list[str]:
    """``design_0001 .. design_{n:04d}``: ids that sort in rank order."""
    width = max(4, len(str(n)))
    return [f"{prefix}_{i:0{width}d}" for i in range(1, n + 1)]


PLATE_COLUMNS = {96: 12, 384: 24}
"""Columns of a standard plate (96 wells: rows A–H × 12; 384 wells: rows A–P × 24)."""


def plate_wells(n: int, plate: int) -> list[tuple[int, str]]:
    """``(plate number, well)`` for ``n`` designs in rank order, row by row (A1, A2, ..., A12, B1, ...)
    on 96- or 384-well plates, a new plate when one is full."""
    if plate not in PLATE_COLUMNS:
        raise ValueError(f"plate must be one of {sorted(PLATE_COLUMNS)}, got {plate}")
    cols = PLATE_COLUMNS[plate]
    out = []
    for i in range(n):
        k, j = divmod(i, plate)
        r, c = divmod(j, cols)
        out.append((k + 1, f"{chr(ord('A') + r)}{c + 1}"))
    return out


def write_plate_map(path, ids: list[str], sequences: list[str], mean: Tensor, std: Tensor, plate: int,
                    objectives: Sequence[str] = ()) -> None:
    """A plate map CSV (plate, well, id, sequence, predicted mean and std), atomically.

    ``mean`` and ``std`` are ``(n,)``, or ``(n, k)`` for the ``k`` named ``objectives``: then a
    ``predicted_mean_<name>`` and ``predicted_std_<name>`` column per objective."""
    mean, std = torch.as_tensor(mean).double(), torch.as_tensor(std).double()
    if mean.dim() == 1:
        names, mean, std = ["predicted_mean", "predicted_std"], mean[:, None], std[:, None]
    else:
        names = [f"predicted_{stat}_{o}" for o in objectives for stat in ("mean", "std")]
    values = torch.stack([mean, std], dim=-1).flatten(1)  # (n, 2k): mean, std per objective
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["plate", "well", "id", "sequence", *names])
        for (k, well), ident, seq, row in zip(plate_wells(len(ids), plate), ids, sequences, values.tolist(),
                                              strict=True):
            w.writerow([k, well, ident, seq, *map(repr, row)])
