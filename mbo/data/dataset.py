"""A labeled set of fixed-length sequences: the unit passed between tasks, reward models and I/O."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mbo.data.alphabet import Alphabet, one_hot

# The median of an even count is the mean of the middle two, as a user reading "median" expects (torch's
# median takes the lower one).
_REDUCERS = {"mean": lambda v: v.mean(0), "median": lambda v: v.quantile(0.5, dim=0),
             "max": lambda v: v.max(0).values, "min": lambda v: v.min(0).values, "first": lambda v: v[0]}
REPLICATES = tuple(_REDUCERS)
"""How :meth:`SequenceDataset.merge_replicates` may combine replicate labels."""


@dataclass
class SequenceDataset:
    """Tokens with optional labels and ids.

    Attributes:
        tokens: LongTensor ``(N, L)`` of tokens of ``alphabet``.
        alphabet: the :class:`Alphabet` the tokens index.
        labels: float ``(N,)`` or ``(N, k)``, or ``None`` for an unlabeled corpus; ``-inf`` marks a
            design measured infeasible (reward models refuse it: impute or drop it first). Integer or
            bool labels are stored as float32, and labels are stored detached (measurements carry no
            gradient); complex labels are refused.
        ids: ``N`` unique strings, or ``None``.
    """

    tokens: Tensor
    alphabet: Alphabet
    labels: Tensor | None = None
    ids: list[str] | None = None

    def __post_init__(self) -> None:
        if self.tokens.dtype != torch.long or self.tokens.dim() != 2:
            raise ValueError(f"tokens must be a LongTensor (N, L), got {self.tokens.dtype} "
                             f"{tuple(self.tokens.shape)}")
        n = self.tokens.shape[0]
        if n and (self.tokens.min() < 0 or self.tokens.max() >= self.alphabet.size):
            raise ValueError(f"tokens must lie in 0..{self.alphabet.size - 1}")
        if self.labels is not None:
            if not isinstance(self.labels, torch.Tensor):
                raise ValueError(f"labels must be a float tensor (N,) or (N, k) (torch.as_tensor(labels, "
                                 f"dtype=torch.float32)), got {type(self.labels).__name__}")
            if self.labels.is_complex():
                raise ValueError(f"labels must be real numbers, got {self.labels.dtype}")
            if not self.labels.is_floating_point():
                self.labels = self.labels.float()  # counts or 0/1 outcomes: reward models fit floats
            # A label computed by a model must not keep its graph alive (or let a fit backpropagate into it).
            self.labels = self.labels.detach()
            if self.labels.shape[0] != n or self.labels.dim() not in (1, 2) or 0 in self.labels.shape[1:]:
                raise ValueError(f"labels must be (N,) or (N, k) with N={n}, "
                                 f"got {tuple(self.labels.shape)}")
            if torch.isnan(self.labels).any() or (self.labels == float("inf")).any():
                raise ValueError("labels contain NaN or +inf (only -inf, measured infeasible, is allowed)")
        if self.ids is not None:
            if len(self.ids) != n:
                raise ValueError(f"{len(self.ids)} ids for {n} sequences")
            if len(set(self.ids)) != n:
                raise ValueError("ids are not unique")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def length(self) -> int:
        """Sequence length L."""
        return self.tokens.shape[1]

    def one_hot(self) -> Tensor:
        """Float one-hot ``(N, L, V)``."""
        return one_hot(self.tokens, self.alphabet.size)

    def sequences(self) -> list[str]:
        """The sequences as strings."""
        return self.alphabet.decode(self.tokens) if len(self) else []

    def subset(self, index: Tensor | slice | list[int] | list[bool]) -> SequenceDataset:
        """A new dataset with the rows picked by ``index``: a bool mask ``(N,)``, indices or a slice
        (one row: ``[i]``)."""
        if not isinstance(index, slice):
            # A list of bools is a mask too (as in torch), not the indices 1 and 0.
            given, index = index, torch.as_tensor(index)
            if index.dim() == 0:
                raise TypeError(f"subset: index must be a bool mask, indices or a slice (one row: [i]), "
                                f"got {given!r}")
            if index.numel() == 0 and index.is_floating_point():  # torch.as_tensor([])
                index = index.long()
            if index.dtype == torch.bool:
                if index.shape != (len(self),):
                    raise ValueError(f"subset: a bool mask must have shape ({len(self)},), got "
                                     f"{tuple(index.shape)}")
                index = index.nonzero().squeeze(-1)
            elif index.is_floating_point() or index.is_complex() or index.dim() != 1:
                raise TypeError(f"subset: indices must be integers (K,), got {index.dtype} "
                                f"{tuple(index.shape)}")
        tokens = self.tokens[index]  # first: an index out of range is torch's clear IndexError
        ids = None
        if self.ids is not None:
            rows = range(len(self))[index] if isinstance(index, slice) else index.tolist()
            ids = [self.ids[i] for i in rows]
        return SequenceDataset(
            tokens=tokens,
            alphabet=self.alphabet,
            labels=None if self.labels is None else self.labels[index],
            ids=ids,
        )

    def merge_replicates(self, how: str = "mean") -> tuple[SequenceDataset, int]:
        """One row per distinct sequence, replicate labels combined (labels ``(N,)`` or ``(N, k)``).

        Args:
            how: ``mean``, ``median``, ``max``, ``min`` or ``first`` (the first row's labels).

        Returns:
            ``(dataset, n_merged)``: rows in order of each sequence's first appearance, keeping its
            first id; ``n_merged`` is how many rows were folded into an earlier one (0: no replicates).
        """
        if how not in _REDUCERS:
            raise ValueError(f"replicates: how must be one of {sorted(_REDUCERS)}, got {how!r}")
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, row in enumerate(self.tokens.tolist()):
            groups.setdefault(tuple(row), []).append(i)
        if len(groups) == len(self):
            return self, 0
        first = [rows[0] for rows in groups.values()]
        labels = None
        if self.labels is not None:
            # float64: the mean of replicates must not overflow or lose digits at any label scale.
            y = self.labels.double()
            labels = torch.stack([_REDUCERS[how](y[rows]) for rows in groups.values()]).to(self.labels.dtype)
        merged = SequenceDataset(self.tokens[first], self.alphabet, labels,
                                 None if self.ids is None else [self.ids[i] for i in first])
        return merged, len(self) - len(groups)

    @classmethod
    def from_strings(cls, seqs: list[str], alphabet: Alphabet, labels=None,
                     ids: list[str] | None = None) -> SequenceDataset:
        """Build from equal-length strings; ``labels`` may be any array-like."""
        lab = None if labels is None else torch.as_tensor(labels, dtype=torch.float32)
        return cls(alphabet.encode_batch(list(seqs)), alphabet, lab, ids)
