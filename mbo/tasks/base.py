"""The Task: what a benchmark (or a user's own problem) hands to the design engine.

A task fixes the design space (alphabet and length), gives an unlabeled corpus to pretrain the
diffusion model on, a labeled offline split to fit reward models on, and, where one exists, a
ground-truth oracle to score designs with. It is deliberately small, in the spirit of BoTorch's test
functions: subclasses fill in data, the base class gives validation and Design-Bench normalization.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property

import torch
from torch import Tensor

from mbo.data.alphabet import Alphabet
from mbo.data.dataset import SequenceDataset


class Task(ABC):
    """Base class of design tasks over fixed-length sequences.

    Subclasses set ``name``, ``alphabet`` and ``length`` and implement :meth:`pretrain_corpus` and
    :meth:`offline_dataset`. Tasks with ground truth set ``has_oracle = True`` and override
    :meth:`oracle`; tasks that see more data than the offline split (benchmarks) override
    :meth:`label_range` so that :meth:`normalize` follows Design-Bench (min-max over the FULL data).

    Attributes:
        name: a short identifier, safe to use in file names and configs.
        alphabet: the :class:`Alphabet` tokens index.
        length: the sequence length L.
        has_oracle: whether :meth:`oracle` returns ground truth (else it returns NaN).
    """

    name: str
    alphabet: Alphabet
    length: int
    has_oracle: bool = False

    @abstractmethod
    def pretrain_corpus(self) -> Tensor:
        """Unlabeled sequences to pretrain the generative model on.

        Returns:
            LongTensor ``(N, L)`` of tokens.
        """

    @abstractmethod
    def offline_dataset(self) -> SequenceDataset:
        """The labeled offline split that reward models may be fitted on.

        Returns:
            A :class:`SequenceDataset` with tokens ``(N, L)`` and float labels ``(N,)``.
        """

    def oracle(self, tokens: Tensor) -> Tensor:
        """Ground-truth score of each sequence (vectorized).

        Convention for every task: ``-inf`` marks an infeasible sequence (outside the task's valid
        design space, e.g. a banned transition); ``NaN`` marks a sequence the task cannot score
        (no ground truth). The base class has no ground truth and returns NaN everywhere.

        Args:
            tokens: LongTensor ``(N, L)`` of tokens of ``alphabet``.

        Returns:
            Float tensor ``(N,)`` on the device of ``tokens``.
        """
        tokens = self.check_tokens(tokens)
        return torch.full((tokens.shape[0],), float("nan"), device=tokens.device)

    def __call__(self, tokens: Tensor) -> Tensor:
        """Same as :meth:`oracle`."""
        return self.oracle(tokens)

    def corpus_entropy(self) -> float | None:
        """The exact entropy per token (nats) of the distribution the pretraining corpus is drawn from,
        where the task knows it (a synthetic generator), else ``None``.

        A masked diffusion model's NELBO per token on fresh draws minus this is its exact distance
        from the truth (the NELBO of the true conditionals equals −log p).
        """
        return None

    def required_letters(self) -> dict[int, str]:
        """Position (0-based) -> the letters every design must have there for the oracle to score it
        (a conserved region); empty for most tasks. Runs add these to the user's ``constraints``, so
        no method spends a query on a design the task rules out by definition."""
        return {}

    def fresh_corpus(self, n: int, generator: torch.Generator) -> Tensor | None:
        """``n`` new draws ``(n, L)`` from the corpus distribution (held-out data no model has seen),
        where the task can make them, else ``None``."""
        return None

    def label_range(self) -> tuple[float, float]:
        """``(y_min, y_max)`` of the labels over the full dataset, used by :meth:`normalize`.

        The default is the offline split's range, which is all a user task knows; benchmarks with a
        larger hidden dataset override it.
        """
        labels = self._offline_labels
        return float(labels.min()), float(labels.max())

    def normalize(self, y: Tensor) -> Tensor:
        """Design-Bench normalization ``(y - y_min_full) / (y_max_full - y_min_full)``.

        Args:
            y: scores of any shape (``-inf``/NaN pass through as ``-inf``/NaN).

        Returns:
            Tensor of the same shape: 0 is the worst and 1 the best design in the full dataset.
        """
        y_min, y_max = self.label_range()
        if not y_max > y_min:
            raise ValueError(f"task {self.name!r}: cannot normalize, label range is "
                             f"[{y_min}, {y_max}]")
        return (y - y_min) / (y_max - y_min)

    @property
    def best_offline(self) -> float:
        """Largest normalized label in the offline split (the bar a design method must beat)."""
        return float(self.normalize(self._offline_labels).max())

    @cached_property
    def _offline_labels(self) -> Tensor:
        labels = self.offline_dataset().labels
        if labels is None or labels.dim() != 1 or labels.numel() == 0:
            raise ValueError(f"task {self.name!r}: the offline split needs non-empty labels (N,)")
        return labels

    def check_tokens(self, tokens: Tensor) -> Tensor:
        """Validate a batch of sequences for this task; returns it unchanged.

        Raises:
            TypeError: not an integer tensor (e.g. one-hot: convert with ``from_one_hot``).
            ValueError: wrong shape or tokens outside ``0..V-1``.
        """
        if not isinstance(tokens, Tensor) or tokens.dtype not in (torch.long, torch.int32,
                                                                   torch.int16, torch.uint8):
            kind = tokens.dtype if isinstance(tokens, Tensor) else type(tokens).__name__
            raise TypeError(f"task {self.name!r}: expected integer tokens (N, L), got {kind}; "
                            "convert one-hot input with mbo.data.from_one_hot")
        if tokens.dim() != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"task {self.name!r}: expected tokens of shape (N, {self.length}), "
                             f"got {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.alphabet.size):
            raise ValueError(f"task {self.name!r}: tokens must lie in 0..{self.alphabet.size - 1}, "
                             f"got range [{int(tokens.min())}, {int(tokens.max())}]")
        return tokens

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, length={self.length}, " \
               f"alphabet={self.alphabet.name!r})"


def check_integers(**settings) -> None:
    """Refuse a count, seed or position given as a fraction (``task.corpus_size=500.7``) or a bool:
    ``int()`` would run another instance than the one asked for. A list (``start_distances``) is
    checked element by element. Raises ValueError naming the ``task.`` key."""
    for key, value in settings.items():
        items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        for v in items:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"task.{key} must be an integer, got {value!r}")
