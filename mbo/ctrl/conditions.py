"""Conditions for CTRL: binned labels of one or more factors ("A high and B low").

A *factor* is one labeled property (e.g. binding to one transcription factor) cut into named classes
by fixed edges. A *condition* picks a class for some factors and leaves the others free; it is encoded
as a LongTensor ``(F,)`` with one class index per factor and ``null = num_classes`` for "any class".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Factor:
    """A continuous label binned into named classes.

    A label ``y`` falls in class ``i`` when ``edges[i-1] < y <= edges[i]`` (first class: ``y <= edges[0]``,
    last: ``y > edges[-1]``).

    Attributes:
        name: the factor's name, used in condition strings (``A=high``).
        edges: strictly increasing cut points, ``len(classes) - 1`` of them.
        classes: class names, lowest label first (e.g. ``("low", "mid", "high")``).
    """

    name: str
    edges: tuple[float, ...]
    classes: tuple[str, ...] = ("low", "mid", "high")

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.edges) + 1:
            raise ValueError(f"factor {self.name!r}: {len(self.classes)} classes need "
                             f"{len(self.classes) - 1} edges, got {len(self.edges)}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"factor {self.name!r}: class edges must increase strictly, got {self.edges} "
                             "(labels with fewer distinct values than classes tie them)")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"factor {self.name!r}: class names repeat: {self.classes}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def null(self) -> int:
        """Index of "any class" in an encoded condition."""
        return len(self.classes)

    def classify(self, y: Tensor) -> Tensor:
        """Class index of each label: float ``(N,)`` -> LongTensor ``(N,)``."""
        edges = torch.as_tensor(self.edges, dtype=torch.float64, device=y.device)
        return torch.bucketize(y.double().contiguous(), edges, right=False)

    def class_index(self, name: str) -> int:
        if name not in self.classes:
            raise ValueError(f"factor {self.name!r} has no class {name!r} (classes: {list(self.classes)})")
        return self.classes.index(name)


def parse_condition(text: str | Mapping[str, str]) -> dict[str, str]:
    """``"A=high,B=low"`` (or a mapping) -> ``{"A": "high", "B": "low"}``."""
    if isinstance(text, Mapping):
        return {str(k): str(v) for k, v in text.items()}
    out: dict[str, str] = {}
    for part in str(text).split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"condition {text!r}: {part.strip()!r} is not FACTOR=CLASS")
        key, value = (s.strip() for s in part.split("=", 1))
        if key in out:
            raise ValueError(f"condition {text!r}: factor {key!r} given twice")
        out[key] = value
    if not out:
        raise ValueError(f"condition {text!r} names no factor")
    return out


def encode_condition(factors: Sequence[Factor], condition: str | Mapping[str, str]) -> Tensor:
    """Encode a condition as LongTensor ``(F,)``; factors it does not name get their null index."""
    parsed = parse_condition(condition)
    names = [f.name for f in factors]
    unknown = sorted(set(parsed) - set(names))
    if unknown:
        raise ValueError(f"condition {condition!r}: unknown factor(s) {unknown} (factors: {names})")
    return torch.tensor([f.class_index(parsed[f.name]) if f.name in parsed else f.null for f in factors],
                        dtype=torch.long)


# What factor and class names may hold, so that a condition's name is one file name.
FILE_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def condition_name(factors: Sequence[Factor], code: Tensor) -> str:
    """File-safe name of an encoded condition ``(F,)``, e.g. ``A-high_B-low`` (``any`` if all null),
    where the factors' and classes' names are :data:`FILE_SAFE` (``mbo-run`` refuses others)."""
    parts = [f"{f.name}-{f.classes[int(c)]}" for f, c in zip(factors, code.tolist(), strict=True)
             if int(c) != f.null]
    return "_".join(parts) or "any"


def satisfies(factors: Sequence[Factor], labels: Tensor, code: Tensor) -> Tensor:
    """Whether each row's labels meet the condition.

    Args:
        labels: float ``(N, F)``, one column per factor (e.g. TRUE scores from oracles).
        code: LongTensor ``(F,)``.

    Returns:
        BoolTensor ``(N,)``.
    """
    ok = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
    for j, (f, c) in enumerate(zip(factors, code.tolist(), strict=True)):
        if c != f.null:
            ok &= f.classify(labels[:, j]) == c
    return ok


class ConditionSampler:
    """Draws conditions ``(n, F)`` for CTRL fine-tuning: a user's list or the label marginals.

    Args:
        factors: the factors, in encoding order.
        conditions: LongTensor ``(M, F)`` of encoded conditions to draw uniformly from; or None to
            draw each factor's class independently from ``marginals`` (labels of different factors
            may come from different files, so no joint distribution is assumed).
        marginals: per factor, LongTensor ``(N_f,)`` of observed classes (needed without ``conditions``).
        drop_prob: with ``conditions``: probability a row becomes all-null; with marginals: probability
            each factor independently becomes null. Null rows earn no reward, so the KL holds the null
            condition at the pretrained model.
    """

    def __init__(self, factors: Sequence[Factor], conditions: Tensor | None = None,
                 marginals: Sequence[Tensor] | None = None, drop_prob: float = 0.1) -> None:
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must lie in [0, 1), got {drop_prob}")
        self.factors = list(factors)
        self.drop_prob = drop_prob
        self.null = torch.tensor([f.null for f in self.factors], dtype=torch.long)
        if conditions is not None:
            conditions = torch.as_tensor(conditions, dtype=torch.long)
            if conditions.dim() != 2 or conditions.shape[1] != len(self.factors) or not len(conditions):
                raise ValueError(f"conditions must be (M, {len(self.factors)}) with M > 0, "
                                 f"got {tuple(conditions.shape)}")
            self.conditions, self.marginals = conditions, None
        else:
            if marginals is None or len(marginals) != len(self.factors):
                raise ValueError("give either conditions or one marginal class tensor per factor")
            self.conditions = None
            self.marginals = [torch.bincount(m.long(), minlength=f.num_classes).double()
                              for m, f in zip(marginals, self.factors, strict=True)]

    def __call__(self, n: int, generator: torch.Generator) -> Tensor:
        """LongTensor ``(n, F)`` on the generator's device."""
        device = generator.device
        if self.conditions is not None:
            idx = torch.randint(len(self.conditions), (n,), generator=generator, device=device)
            out = self.conditions.to(device)[idx]
            drop = torch.rand(n, 1, generator=generator, device=device) < self.drop_prob
        else:
            cols = [torch.multinomial(m.to(device), n, replacement=True, generator=generator)
                    for m in self.marginals]
            out = torch.stack(cols, dim=1)
            drop = torch.rand(out.shape, generator=generator, device=device) < self.drop_prob
        return torch.where(drop, self.null.to(device), out)
