"""FLEXS RNA binding landscapes (Sinai et al. 2020, arXiv 2010.02141): design an RNA binding hidden targets.

Reproduces ``flexs.landscapes.RNABinding`` of the flexs 0.2.8 wheel (read from the wheel, never
imported). For a design ``x`` of length L and targets ``t_1..t_T`` (RNA strings of length 100):

    fitness(x) = mean_i  E(t_i, x) / norm_i,   E(a, b) = RNA.duplexfold(a, b).energy   (kcal/mol)
    norm_i = E(revcomp(t_i), t_i) · L / len(t_i)

``duplexfold`` is ViennaRNA's minimum-free-energy hybridization of two strands (no intramolecular
pairs), called with the target first and the design second, as FLEXS does. Energies are negative, so
the ratio is positive and larger is better; ``norm_i`` is the energy of the target's perfect
(Watson-Crick) reverse complement, scaled to the design length, so 1.0 is FLEXS's estimate of the
optimum (an underestimate: the best 14-mers of ``L14_RNA1`` score ~1.05). The arithmetic is
FLEXS's, in float64 (``(energies / norm).mean()``), so scores agree with the wheel's code to the last
bit under the same ViennaRNA version; energies can differ slightly between ViennaRNA releases (FLEXS
was run with 2.4; this project locks 2.8).

Problems, named as in the wheel's ``flexs.landscapes.rna.registry()``: ``L{14,50,100}_RNA{t}`` (one
target), ``L{14,50,100}_RNA{t1}+{t2}`` (two targets, scores averaged) and ``C20_L100_RNA{t1}+{t2}``
(two targets and a conserved region: positions 21-40, counted from 0 as ``constraints.*`` count, must
read ``GCCCGGCCCAUGUGAGCAUG``). The AdaLead
paper's Table 1 uses ``L14_RNA1``, ``L14_RNA1+2`` and ``C20_L100_RNA1+3``.

**The conserved region is a design constraint here.** FLEXS scores a design that breaks it 0 (a
"swamp"); this task scores it ``-inf`` (infeasible, the project's convention), never a number a
model could regress on. Starts 4 and 5 of the length-100 problems break it (start 4 at one position,
start 5 at 14), so the ``C20_*`` problems' offline data are starts 1-3 only.

Each problem comes with 5 published starting sequences (FLEXS runs one campaign per start). The
pretraining corpus (:mod:`mbo.tasks.mutants`) is random mutants of those starts within a small Hamming
radius: all the protocol allows without oracle calls. Data: ``mbo/tasks/data/flexs_rna.npz`` (see its
README and ``python -m mbo.tasks.build_flexs``).
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import RNA as vienna
import torch
from torch import Tensor

from mbo.data.alphabet import RNA
from mbo.data.dataset import SequenceDataset
from mbo.tasks.base import Task, check_integers
from mbo.tasks.mutants import distinct_mutants, random_mutants

DATA_PATH = Path(__file__).resolve().parent / "data" / "flexs_rna.npz"
LENGTHS = (14, 50, 100)
_COMPLEMENT = str.maketrans("ACGU", "UGCA")


@dataclass(frozen=True)
class RNAProblem:
    """One problem of the FLEXS registry.

    Attributes:
        name: e.g. ``"L14_RNA1+2"``.
        targets: 1-based target numbers.
        length: design length L.
        conserved_start: 0-based first position of the conserved region, or ``None``.
        conserved_pattern: the letters that must sit there, or ``None``.
    """

    name: str
    targets: tuple[int, ...]
    length: int
    conserved_start: int | None = None
    conserved_pattern: str | None = None


@dataclass(frozen=True)
class FlexsRNAData:
    """The shipped data: 4 targets, 5 starts per length, the conserved region."""

    targets: tuple[str, ...]
    starts: dict[int, tuple[str, ...]]
    conserved_start: int
    conserved_pattern: str


def load_data(path: str | Path = DATA_PATH) -> FlexsRNAData:
    """Read ``flexs_rna.npz`` (no pickle)."""
    with np.load(path, allow_pickle=False) as npz:
        return FlexsRNAData(targets=tuple(str(t) for t in npz["targets"]),
                            starts={n: tuple(str(s) for s in npz[f"starts_L{n}"]) for n in LENGTHS},
                            conserved_start=int(npz["conserved_start"]),
                            conserved_pattern=str(npz["conserved_pattern"]))


def rna_problems(data: FlexsRNAData | None = None) -> dict[str, RNAProblem]:
    """Every problem of the wheel's ``registry()``, by name (36 for its 4 targets)."""
    data = data or load_data()
    n = len(data.targets)
    problems: dict[str, RNAProblem] = {}
    for t in range(1, n + 1):
        for length in LENGTHS:
            problems[f"L{length}_RNA{t}"] = RNAProblem(f"L{length}_RNA{t}", (t,), length)
    for t1 in range(1, n + 1):
        for t2 in range(t1 + 1, n + 1):
            for length in LENGTHS:
                name = f"L{length}_RNA{t1}+{t2}"
                problems[name] = RNAProblem(name, (t1, t2), length)
    pattern = data.conserved_pattern
    for t1 in range(1, n + 1):
        for t2 in range(t1 + 1, n + 1):
            name = f"C{len(pattern)}_L100_RNA{t1}+{t2}"
            problems[name] = RNAProblem(name, (t1, t2), 100, data.conserved_start, pattern)
    return problems


def reverse_complement(seq: str) -> str:
    """Watson-Crick reverse complement of an RNA string (``ACGU``)."""
    return seq.translate(_COMPLEMENT)[::-1]


def binding_energies(targets: tuple[str, ...] | list[str], sequences: list[str]) -> list[list[float]]:
    """``E(t, x) = RNA.duplexfold(t, x).energy`` for every sequence and target: ``[N][T]`` floats.

    A module-level function so a process pool can run it.
    """
    return [[vienna.duplexfold(t, s).energy for t in targets] for s in sequences]


class RNABinding(Task):
    """A FLEXS RNA binding problem as a design task.

    Args:
        problem: a name from :func:`rna_problems` (default ``L14_RNA1``).
        corpus_size: distinct random mutants of the (feasible) starting sequences to pretrain on.
        corpus_mutation_fraction: a corpus row differs from its start at ``1..k`` positions,
            ``k = max(1, round(fraction · L))`` (conserved positions are never changed).
        seed: seeds the corpus.
        workers: processes that score a large batch in parallel (``1``: in this process). Batches of
            fewer than ``parallel_min`` sequences are always scored here (a pool costs ~2 s to start
            and a round-trip per call).
        parallel_min: the smallest batch sent to the pool.

    Scores are float64; see the module docstring for the formula. ``label_range()`` is ``(0, 1)``:
    0 is no binding, 1 the perfect-complement estimate of the optimum.

    Example:
        >>> task = RNABinding("L14_RNA1")
        >>> task.offline_dataset().labels      # the 5 starts, measured
    """

    alphabet = RNA
    has_oracle = True

    def __init__(self, problem: str = "L14_RNA1", corpus_size: int = 5000,
                 corpus_mutation_fraction: float = 0.2, seed: int = 0, workers: int = 1,
                 parallel_min: int = 64):
        data = load_data()
        problems = rna_problems(data)
        if problem not in problems:
            raise ValueError(f"unknown FLEXS RNA problem {problem!r}; known: {', '.join(problems)}")
        check_integers(corpus_size=corpus_size, seed=seed, workers=workers, parallel_min=parallel_min)
        if corpus_size < 1:
            raise ValueError(f"corpus_size must be >= 1, got {corpus_size}")
        if not 0.0 < corpus_mutation_fraction <= 1.0:
            raise ValueError(f"corpus_mutation_fraction must lie in (0, 1], got {corpus_mutation_fraction}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.problem = problems[problem]
        self.name = f"flexs_{problem}"
        self.length = self.problem.length
        self.targets = tuple(data.targets[t - 1] for t in self.problem.targets)
        self.start_strings = data.starts[self.length]
        self.corpus_size, self.seed = int(corpus_size), int(seed)
        self.max_mutations = max(1, round(corpus_mutation_fraction * self.length))
        self.workers, self.parallel_min = int(workers), int(parallel_min)
        # FLEXS's normalizers: the perfect complement's duplex energy, per nucleotide of design.
        self.norm_values = np.array([vienna.duplexfold(reverse_complement(t), t).energy * self.length / len(t)
                                     for t in self.targets])
        self._pool: ProcessPoolExecutor | None = None
        self._conserved: Tensor | None = None
        if self.problem.conserved_pattern is not None:
            self._conserved = RNA.encode(self.problem.conserved_pattern)

    # ------------------------------------------------------------------ the design space
    def conserved_mask(self) -> Tensor:
        """Bool ``(L,)``: the positions fixed by the conserved region (all False without one)."""
        mask = torch.zeros(self.length, dtype=torch.bool)
        mask[list(self.required_letters())] = True
        return mask

    def required_letters(self) -> dict[int, str]:
        """The conserved region, position -> its letter (empty without one)."""
        if self.problem.conserved_pattern is None:
            return {}
        return {self.problem.conserved_start + i: c for i, c in enumerate(self.problem.conserved_pattern)}

    def is_feasible(self, tokens: Tensor) -> Tensor:
        """Bool ``(N,)``: the design keeps the conserved region (always True without one)."""
        tokens = self.check_tokens(tokens).long().cpu()
        if self._conserved is None:
            return torch.ones(len(tokens), dtype=torch.bool)
        start = self.problem.conserved_start
        return (tokens[:, start:start + len(self._conserved)] == self._conserved).all(dim=1)

    def starting_sequences(self) -> Tensor:
        """The 5 published starting sequences ``(5, L)``, feasible or not (``is_feasible`` tells)."""
        return RNA.encode_batch(list(self.start_strings))

    # ------------------------------------------------------------------ data
    def offline_dataset(self) -> SequenceDataset:
        """The feasible starting sequences with their fitness (ids ``start_<k>``, k = FLEXS's number)."""
        return self._offline

    @cached_property
    def _offline(self) -> SequenceDataset:
        starts = self.starting_sequences()
        keep = self.is_feasible(starts).nonzero().squeeze(-1)
        tokens = starts[keep]
        return SequenceDataset(tokens, RNA, labels=self.oracle(tokens),
                               ids=[f"start_{int(k) + 1}" for k in keep])

    def pretrain_corpus(self) -> Tensor:
        """``corpus_size`` distinct random mutants ``(N, L)`` of the feasible starts (seeded, no oracle
        calls); conserved positions are never mutated, so every row is feasible."""
        return self._corpus

    @cached_property
    def _corpus(self) -> Tensor:
        return distinct_mutants(self._offline.tokens, self.corpus_size, self.max_mutations, RNA.size,
                                torch.Generator().manual_seed(self.seed), frozen=self.conserved_mask())

    def fresh_corpus(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` new draws ``(n, L)`` from the corpus distribution (may repeat corpus rows)."""
        return random_mutants(self._offline.tokens, n, self.max_mutations, RNA.size, generator,
                              frozen=self.conserved_mask())

    def label_range(self) -> tuple[float, float]:
        return 0.0, 1.0

    # ------------------------------------------------------------------ the oracle
    def oracle(self, tokens: Tensor) -> Tensor:
        """FLEXS fitness ``(N,)`` (float64, on the device of ``tokens``); ``-inf`` where the conserved
        region is broken."""
        tokens = self.check_tokens(tokens)
        out = torch.full((len(tokens),), -math.inf, dtype=torch.float64)
        feasible = self.is_feasible(tokens)
        if feasible.any():
            seqs = RNA.decode(tokens.long().cpu()[feasible])
            energies = np.array(self._energies(seqs), dtype=np.float64).reshape(len(seqs), -1)
            out[feasible] = torch.from_numpy((energies / self.norm_values).mean(axis=1))
        return out.to(tokens.device)

    def _energies(self, seqs: list[str]) -> list[list[float]]:
        if self.workers == 1 or len(seqs) < self.parallel_min:
            return binding_energies(self.targets, seqs)
        if self._pool is None:
            # spawn: the parent holds torch's threads, and forking a threaded process can deadlock.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        chunks = [seqs[i::self.workers] for i in range(self.workers)]
        parts = list(self._pool.map(binding_energies, [self.targets] * len(chunks), chunks))
        # Undo the round-robin split: row j of chunk c is sequence c + j * workers.
        out: list[list[float]] = [[]] * len(seqs)
        for c, part in enumerate(parts):
            out[c::self.workers] = part
        return out

    def close(self) -> None:
        """Shut the process pool down (it is also shut down at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pool"] = None  # a pool does not pickle; the copy starts its own when it needs one
        return state

    # ------------------------------------------------------------------ known optima
    def complement_designs(self, k: int = 5) -> Tensor:
        """The ``k`` best (by fitness) reverse complements of the targets' length-L windows ``(k, L)``.

        FLEXS normalizes by the perfect complement, and the reverse complement of a target window is
        the design that pairs with it perfectly; for the L14 problems the best of them are local
        maxima (no single mutation improves them), i.e. the landscape's known peaks. Infeasible
        windows (conserved region broken) are left out.
        """
        windows = sorted({reverse_complement(t[i:i + self.length]) for t in self.targets
                          for i in range(len(t) - self.length + 1)})
        tokens = RNA.encode_batch(windows)
        scores = self.oracle(tokens)
        order = torch.sort(scores, descending=True, stable=True).indices
        order = order[torch.isfinite(scores[order])][:k]
        return tokens[order]
