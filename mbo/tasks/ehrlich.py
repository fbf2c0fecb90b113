"""Ehrlich functions (holo-bench): closed-form motif objectives on a feasible Markov-chain manifold.

A sequence is feasible iff every transition has non-zero probability under a sparse, banded transition
matrix; infeasible sequences score ``-inf`` (never clipped, never dropped: count them). A feasible
sequence scores the product over motifs of the quantized fraction of each motif present at its
spacing, so the optimum is exactly 1. Random uniform sequences are almost never feasible (0.06 % at
32 states and length 32), which is what makes the task a test of staying on the data manifold.

The pretraining corpus is sampled from the feasible Markov chain itself, as a stand-in for the
unlabeled natural sequences a user would pretrain on; the offline split is a low-scoring subset of
fresh samples from the same chain.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from mbo.config import SettingsError
from mbo.data.alphabet import Alphabet
from mbo.data.dataset import SequenceDataset
from mbo.tasks.base import Task

# 64 distinct printable letters, so up to 64 states read and write as ordinary CSV strings.
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+="


def _check_settings(num_states, length, num_motifs, motif_length, quantization, seed, corpus_size,
                    offline_size, offline_max_score) -> None:
    """Refuse an instance holo cannot build, or builds as another one than its name says."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise SettingsError(f"Ehrlich: {what}")

    for key, value in (("num_states", num_states), ("length", length), ("num_motifs", num_motifs),
                       ("motif_length", motif_length), ("corpus_size", corpus_size),
                       ("offline_size", offline_size)):
        need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
             f"task.{key} must be a positive integer, got {value!r}")
    # torch seeds with a 64-bit integer, and the data are drawn with seed + 1 and seed + 2.
    need(isinstance(seed, int) and not isinstance(seed, bool) and abs(seed) < 2**62,
         f"task.seed must be an integer of magnitude below 2^62, got {seed!r}")
    # At 2 states holo's banded transition matrix is reducible for about half the seeds (its
    # Perron-Frobenius check fails), and at 2 or 3 every transition is allowed anyway.
    need(3 <= num_states <= len(_LETTERS),
         f"task.num_states must be in [3, {len(_LETTERS)}], got {num_states}")
    need(isinstance(offline_max_score, (int, float)) and not isinstance(offline_max_score, bool)
         and 0 <= offline_max_score <= 1, f"task.offline_max_score must be a number in [0, 1] (scores lie "
         f"there), got {offline_max_score!r}")
    need(motif_length >= 2, f"task.motif_length must be >= 2 (its elements are spaced), got {motif_length}")
    need(num_motifs * motif_length <= length, f"task.num_motifs × task.motif_length = "
         f"{num_motifs * motif_length} motif elements do not fit in task.length = {length}")
    # holo quantizes a motif's count in steps of ceil(motif_length / q): a q that does not divide the
    # motif length silently gives the levels of a smaller q.
    need(quantization is None or (isinstance(quantization, int) and not isinstance(quantization, bool)
                                  and quantization >= 1
                                  and (quantization >= motif_length or motif_length % quantization == 0)),
         f"task.quantization must be null or divide task.motif_length = {motif_length}, got {quantization!r}")


class Ehrlich(Task):
    """An Ehrlich function as a design task.

    Args:
        num_states: vocabulary size V (at most 64).
        length: sequence length L.
        num_motifs: number of motifs c; motif_length: k, elements per motif.
        quantization: motif presence is quantized to this many levels (``None``: k levels). A value above
            ``motif_length`` means every level; below it, it must divide ``motif_length``.
        seed: seeds the function (transition matrix, motifs, spacings) and the data drawn here.
        corpus_size: unlabeled feasible sequences for pretraining.
        offline_size: labeled sequences in the offline split.
        offline_max_score: the offline split keeps only chain samples scoring at most this.

    The score is already in ``[0, 1]``, so :meth:`normalize` is the identity.
    """

    has_oracle = True

    def __init__(self, num_states: int = 32, length: int = 32, num_motifs: int = 2,
                 motif_length: int = 4, quantization: int | None = 4, seed: int = 0,
                 corpus_size: int = 20_000, offline_size: int = 2_000,
                 offline_max_score: float = 0.5):
        # Imported here: holo pulls in pandas at import, which only this task needs.
        from holo.test_functions.closed_form import Ehrlich as HoloEhrlich

        _check_settings(num_states, length, num_motifs, motif_length, quantization, seed, corpus_size,
                        offline_size, offline_max_score)
        if quantization is not None and quantization > motif_length:
            quantization = motif_length  # what holo computes with it (every level), and the name says so
        self.function = HoloEhrlich(num_states=num_states, dim=length, num_motifs=num_motifs,
                                    motif_length=motif_length, quantization=quantization,
                                    random_seed=seed)
        self.alphabet = Alphabet(_LETTERS[:num_states], name=f"ehrlich{num_states}")
        self.length = int(length)
        self.seed = int(seed)
        self.corpus_size, self.offline_size = int(corpus_size), int(offline_size)
        self.offline_max_score = float(offline_max_score)
        q = "none" if quantization is None else quantization
        self.name = f"ehrlich_s{num_states}_l{length}_m{num_motifs}x{motif_length}_q{q}_seed{seed}"

    def sample_feasible(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` sequences ``(n, L)`` from the feasible Markov chain (all feasible by construction)."""
        from holo.test_functions.elemental import sample_dmp

        f = self.function
        return sample_dmp(f.stationary_dist.squeeze(-1), f.transition_matrix, self.length, n,
                          generator)

    def corpus_entropy(self) -> float:
        """Exact entropy per token of the chain the corpus is sampled from:
        [H(π) + (L − 1)·Σ_i π_i H(T_i·)] / L, with π the stationary (initial) distribution and T the
        transition matrix (the chain starts stationary, so every position is π-distributed)."""
        T = self.function.transition_matrix.double()
        pi = self.function.stationary_dist.double().reshape(-1)

        def entropy(p: Tensor) -> Tensor:
            return -(p * torch.where(p > 0, p.log(), 0.0)).sum(-1)

        total = entropy(pi) + (self.length - 1) * (pi * entropy(T)).sum()
        return float(total) / self.length

    def fresh_corpus(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` new chain samples ``(n, L)`` (held-out data for the prior's NELBO)."""
        return self.sample_feasible(n, generator)

    def is_feasible(self, tokens: Tensor) -> Tensor:
        """Bool ``(N,)``: every transition of the sequence is allowed."""
        tokens = self.check_tokens(tokens).long().cpu()
        allowed = self.function.transition_matrix[tokens[:, :-1], tokens[:, 1:]] > 0
        return allowed.all(dim=1)

    def pretrain_corpus(self) -> Tensor:
        return self._corpus

    @cached_property
    def _corpus(self) -> Tensor:
        return self.sample_feasible(self.corpus_size, torch.Generator().manual_seed(self.seed + 1))

    def offline_dataset(self) -> SequenceDataset:
        return self._offline

    @cached_property
    def _offline(self) -> SequenceDataset:
        gen = torch.Generator().manual_seed(self.seed + 2)
        kept: list[Tensor] = []
        n_kept = 0
        for _ in range(100):
            x = self.sample_feasible(max(4 * self.offline_size, 1000), gen)
            x = x[self.oracle(x) <= self.offline_max_score]
            kept.append(x)
            # Distinct sequences only: a measured design appears once in a dataset.
            kept = [_distinct(torch.cat(kept))]
            n_kept = len(kept[0])
            if n_kept >= self.offline_size:
                break
        else:
            raise SettingsError(f"{self.name}: could not draw {self.offline_size} distinct chain samples "
                                f"scoring <= {self.offline_max_score} (found {n_kept}); lower "
                                "task.offline_size or raise task.offline_max_score")
        tokens = torch.cat(kept)[: self.offline_size]
        return SequenceDataset(tokens, self.alphabet, labels=self.oracle(tokens).float(),
                               ids=[f"offline_{i}" for i in range(len(tokens))])

    def oracle(self, tokens: Tensor) -> Tensor:
        """True score ``(N,)`` in ``[0, 1]``; ``-inf`` for infeasible sequences."""
        tokens = self.check_tokens(tokens)
        return self.function(tokens.long().cpu()).to(torch.float32).to(tokens.device)

    def label_range(self) -> tuple[float, float]:
        return 0.0, 1.0

    def optimal_solution(self) -> Tensor:
        """A sequence ``(L,)`` scoring exactly 1 (for tests and sanity checks)."""
        return self.function.optimal_solution()


def _distinct(tokens: Tensor) -> Tensor:
    """The distinct rows of ``tokens``, in first-seen order."""
    seen: set[tuple[int, ...]] = set()
    keep = [i for i, row in enumerate(map(tuple, tokens.tolist())) if not (row in seen or seen.add(row))]
    return tokens[torch.tensor(keep, dtype=torch.long)]
