"""RNA inverse folding: design a sequence whose minimum-free-energy (MFE) structure is a target.

For a target dot-bracket structure ``s*`` of length L and a design ``x``:

    reward(x) = 1 − d_bp(MFE(x), s*) / L         (ViennaRNA: ``RNA.fold``, ``RNA.bp_distance``)

``d_bp`` counts the base pairs in one structure and not the other, so the reward lies in ``[0, 1]``
and is 1 exactly when the design folds into the target (:meth:`InverseFolding.is_solved`). It is a
black box for design methods: no gradient, and flat under most single mutations.

Targets (:data:`RANDOM_TARGETS`): the MFE structures of 20 seeded uniform random sequences, 4 each of
lengths 30, 35, 40, 45 and 50 (few distinct lengths, because a diffusion prior is trained per length),
with at least 30 % of positions paired; each is designable (its generating sequence folds into it).
:func:`random_targets` regenerates them. Also shipped: 9 short puzzles of the Eterna100-V2 benchmark
(:data:`ETERNA100_SHORT`, 12-45 nt, MIT-licensed, see ``mbo/tasks/data/README.md``), each with a
player solution that folds into it under ViennaRNA 2.8.

The pretraining corpus is "well-folded" random RNA of the target's length: uniform random sequences
kept when their MFE structure has probability at least ``min_mfe_probability`` in the Boltzmann
ensemble (a stable fold, the kind of sequence an inverse-folding design should be). It is generic
(it does not depend on the target), costly to build (one partition function per candidate; about 25 %
of random 50-mers pass 0.3), and therefore cached on disk under ``$MBO_CACHE_DIR`` (default
``.cache/mbo``), keyed by length, size, threshold, seed and ViennaRNA version, and shared by every
target of that length. The offline split is more sequences from the same distribution, scored.

:func:`inverse_fold_baseline` is ViennaRNA's own adaptive walk (``RNA.inverse_fold``), a white-box
reference: it folds thousands of candidates internally, which no oracle budget counts.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np
import RNA as vienna
import torch
from filelock import FileLock
from torch import Tensor

from mbo.atomic import atomic_path
from mbo.data.alphabet import RNA
from mbo.data.dataset import SequenceDataset
from mbo.tasks.base import Task, check_integers

# The ViennaRNA release RANDOM_TARGETS were folded with (another release may fold a few differently).
TARGETS_VIENNARNA = "2.8.0"

# random_targets(n=20, seed=0): the MFE structures of seeded uniform random sequences.
RANDOM_TARGETS = (
    ".........((((((....)))))).....",
    "((((((((..((((....))))...)))).)))).",
    "....((((.....))))((..((....))..)).......",
    "((.((((....)))).))....((..((.....))..))......",
    "...(((((((.(..((..(((((((....))))))).)).).))))))).",
    "((((.((.......)).)))).........",
    "...........(((...(((....)))...)))..",
    ".....((((((((.......))))))))............",
    ".....((((((.(((......)))...))))))............",
    "..(((((........)))))...(.((((((.((....))..)))))).)",
    "......(((.((....)).)))........",
    ".........((((....))))..((........))",
    "..................(((((((.......))))))).",
    "............(((.(((((((....)))....)))).)))...",
    "(((((......((((((((.....))))))))..)))))...........",
    ".(((((((((.......))).)).)).)).",
    "...((..(((((((((...))).)))).))..)).",
    "..(((...)))..((((.((((......).))).))))..",
    "(((..(.(((((((.((((....))))...))))))).).)))..",
    ".........((((.((((.((..(((.........))).)).))))))))",
)

# Eterna100-V2 puzzles of at most 50 nt whose sample player solution folds into them under ViennaRNA
# 2.8: puzzle number -> (name, Eterna puzzle id, structure, a solution). Source and license (MIT):
# mbo/tasks/data/README.md.
ETERNA100_SHORT = {
    1: ("Simple Hairpin", 20111, "(((((......)))))", "GGGGGGGGGGGCCCCC"),
    3: ("Prion Pseudoknot - Difficulty Level 0", 15819, "((((((.((((....))))))).)))..........",
        "CGUGACAUUAUAAAAAUGAGUCGAUGAAAAAAAAAA"),
    8: ("G-C Placement", 1074756, "((((...)))).", "GUAUUUAAUACA"),
    10: ("Frog Foot", 426871, "..........((((....))))((((....))))((((...))))",
         "AAAAAAAAAACUGUGAAAAUGGGUUAGAAAUAGCGAGCAAAGCUC"),
    11: ("InfoRNA test 16", 816170, "((((((.((((((((....))))).)).).))))))",
         "UAAAACGAGAAAAACGAAAGUUUUAUCAUGGUUUUA"),
    20: ("InfoRNA bulge test 9", 775904, "(((((((.(.(.(.(((((((....)))))))))))))))))",
         "GGGGGGGAGAGAGAGGGGGGGAAAACCCCCCCCCCCCCCCCC"),
    26: ("stickshift", 852950, "..((((((((.....)).))))))..", "AAAUGUGAAUGAAAAAUAUUAUAUAA"),
    33: ("Worm 1", 1569272, ".......(.(.(.(.(.((.((.(....).)).)).).).).).)",
         "AAAAAAAGGUGAGAGAGUAGUUGCGAAGGGAAGUAGUGUGUGAGC"),
    40: ("Tripod5", 903842, "..((((((((.....))))((((.....))))))))..",
         "AAGCCCCAUUGAAAAGAUGGUAUGAAAAGUACGGGUAA"),
}


def random_targets(n: int = 20, seed: int = 0, lengths: tuple[int, ...] = (30, 35, 40, 45, 50),
                   min_paired_fraction: float = 0.3) -> list[str]:
    """MFE structures of seeded uniform random sequences: target ``i`` has length
    ``lengths[i % len(lengths)]``, at least ``min_paired_fraction`` of its positions paired, and
    differs from the earlier ones. ``random_targets()`` gives :data:`RANDOM_TARGETS`."""
    gen = torch.Generator().manual_seed(seed)
    out: list[str] = []
    for i in range(n):
        length = lengths[i % len(lengths)]
        for _ in range(10_000):
            structure, _ = vienna.fold(RNA.decode(torch.randint(RNA.size, (length,), generator=gen)))
            if 2 * structure.count("(") >= min_paired_fraction * length and structure not in out:
                out.append(structure)
                break
        else:
            raise ValueError(f"no random {length}-mer folds with {min_paired_fraction:.0%} paired positions")
    return out


MIN_HAIRPIN = 3  # ViennaRNA's smallest hairpin loop (RNA.md().min_loop_size): no MFE structure has less


def check_structure(structure: str) -> str:
    """Return ``structure`` if it is a balanced dot-bracket string over ``.()`` that ViennaRNA can
    fold a sequence into (every hairpin loop at least :data:`MIN_HAIRPIN` unpaired); else ValueError."""
    if not structure or set(structure) - set(".()"):
        raise ValueError(f"a target structure is a non-empty dot-bracket string over '.()', got "
                         f"{structure!r}")
    opened: list[int] = []
    for i, c in enumerate(structure):
        if c == "(":
            opened.append(i)
        elif c == ")":
            if not opened:
                raise ValueError(f"target structure {structure!r}: ')' at position {i} closes nothing")
            j = opened.pop()
            if i - j - 1 < MIN_HAIRPIN:
                raise ValueError(f"target structure {structure!r}: the pair at positions {j} and {i} "
                                 f"encloses {i - j - 1} unpaired base(s), and ViennaRNA folds no hairpin "
                                 f"loop shorter than {MIN_HAIRPIN}, so no sequence can reach it")
    if opened:
        raise ValueError(f"target structure {structure!r}: {len(opened)} unclosed '('")
    return structure


def resolve_target(target: int | str) -> tuple[str, str]:
    """``(label, structure)`` for an index into :data:`RANDOM_TARGETS`, ``"eterna100:<puzzle>"`` or a
    dot-bracket structure."""
    if isinstance(target, int) and not isinstance(target, bool):
        if not 0 <= target < len(RANDOM_TARGETS):
            raise ValueError(f"target index must lie in 0..{len(RANDOM_TARGETS) - 1}, got {target}")
        return f"random{target}", RANDOM_TARGETS[target]
    if isinstance(target, str) and target.startswith("eterna100:"):
        key = target.removeprefix("eterna100:")
        if not key.isdigit() or int(key) not in ETERNA100_SHORT:
            raise ValueError(f"unknown Eterna100 puzzle {target!r}; shipped: "
                             f"{', '.join(f'eterna100:{k}' for k in ETERNA100_SHORT)}")
        return f"eterna{int(key)}", ETERNA100_SHORT[int(key)][2]
    if isinstance(target, str):
        structure = check_structure(target)
        return f"custom_L{len(structure)}", structure
    raise ValueError(f"target must be an int, 'eterna100:<puzzle>' or a dot-bracket string, got {target!r}")


# ---------------------------------------------------------------------------------- ViennaRNA calls
def mfe_structures(sequences: list[str]) -> list[str]:
    """``RNA.fold`` structure of each sequence (module-level so a process pool can run it)."""
    return [vienna.fold(s)[0] for s in sequences]


def mfe_probabilities(sequences: list[str]) -> list[float]:
    """Probability of each sequence's MFE structure in its Boltzmann ensemble (ViennaRNA defaults)."""
    out = []
    for s in sequences:
        fc = vienna.fold_compound(s)
        structure, mfe = fc.mfe()
        fc.exp_params_rescale(mfe)  # scale the partition function near the MFE: no overflow
        fc.pf()
        out.append(fc.pr_structure(structure))
    return out


def _pool_map(fn, sequences: list[str], workers: int, pool_holder: dict) -> list:
    """``fn(sequences)`` split round-robin over a lazily started spawn pool kept in ``pool_holder``."""
    if pool_holder.get("pool") is None:
        # spawn: the parent holds torch's threads, and forking a threaded process can deadlock.
        pool_holder["pool"] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    chunks = [sequences[i::workers] for i in range(workers)]
    out: list = [None] * len(sequences)
    for c, part in enumerate(pool_holder["pool"].map(fn, chunks)):
        out[c::workers] = part
    return out


def default_cache_dir() -> Path:
    """``$MBO_CACHE_DIR``, else ``.cache/mbo`` (the project's cache for pretrained models)."""
    return Path(os.environ.get("MBO_CACHE_DIR", ".cache/mbo"))


TRIAL_BATCHES = 8  # batches drawn before the pass rate is trusted
# Candidates a corpus may still need, at the pass rate seen: one core folds a million in about 7 min at
# 30 nt and 33 min at 50 nt; at 120 nt one in 512 reaches the default 0.3, and 3,100 would take hours.
MAX_DRAWS = 1_000_000


def well_folded_sequences(length: int, n: int, min_mfe_probability: float, seed: int,
                          workers: int = 1, batch: int = 512) -> tuple[Tensor, Tensor]:
    """``n`` uniform random RNA sequences of ``length`` whose MFE structure has probability at least
    ``min_mfe_probability``, in draw order: tokens ``(n, L)`` and those probabilities ``(n,)``.

    Deterministic in ``seed`` whatever ``workers`` is (candidates are drawn in batches of ``batch``
    from one generator and kept in order)."""
    gen = torch.Generator().manual_seed(seed)
    holder: dict = {}
    kept, probs = [], []
    drawn = 0
    try:
        while len(kept) < n:
            if drawn >= TRIAL_BATCHES * batch and (n - len(kept)) * drawn > MAX_DRAWS * max(len(kept), 1):
                # Long targets and strict thresholds pass rarely or never: say so instead of folding for
                # hours.
                raise ValueError(f"{len(kept)} of {drawn:,} random {length}-mers have an MFE structure of "
                                 f"probability >= {min_mfe_probability:g}; at that rate {n} need over "
                                 f"{MAX_DRAWS:,} more: lower min_mfe_probability or the corpus size")
            cand = torch.randint(RNA.size, (batch, length), generator=gen)
            drawn += batch
            seqs = RNA.decode(cand)
            p = (mfe_probabilities(seqs) if workers == 1 else
                 _pool_map(mfe_probabilities, seqs, workers, holder))
            for row, prob in zip(cand, p, strict=True):
                if prob >= min_mfe_probability and len(kept) < n:
                    kept.append(row)
                    probs.append(prob)
    finally:
        if holder.get("pool") is not None:
            holder["pool"].shutdown()
    return torch.stack(kept), torch.tensor(probs, dtype=torch.float64)


def cached_well_folded(length: int, n: int, min_mfe_probability: float, seed: int,
                       cache_dir: str | os.PathLike | None = None, workers: int = 1) -> Tensor:
    """:func:`well_folded_sequences` ``(n, L)``, built once and cached as ``.npz`` (no pickle) under
    ``cache_dir`` (default :func:`default_cache_dir`); a file lock lets parallel jobs build it once."""
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    key = f"L{length}-n{n}-p{min_mfe_probability:g}-seed{seed}-vienna{vienna.__version__}"
    path = directory / f"rnafold-corpus-{key}.npz"
    with FileLock(path.with_name(path.name + ".lock")):
        if path.exists():
            try:
                # Our own handle: np.load leaves its file open when the zip inside is broken.
                with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
                    stored = npz["tokens"]
                # Letters as stored (uint8), of this shape and in range: anything else is not ours.
                ours = stored.dtype == np.uint8 and stored.shape == (n, length)
                if ours and int(stored.max(initial=0)) < RNA.size:
                    return torch.from_numpy(stored.astype(np.int64))
            except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
                pass  # a broken cache entry is ours to rebuild
        tokens, probs = well_folded_sequences(length, n, min_mfe_probability, seed, workers)
        with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, tokens=tokens.numpy().astype(np.uint8), mfe_probability=probs.numpy(),
                                key=np.array(key))
    return tokens


class InverseFolding(Task):
    """Inverse folding of one target structure as a design task.

    Args:
        target: an index into :data:`RANDOM_TARGETS` (default 0), ``"eterna100:<puzzle>"`` (see
            :data:`ETERNA100_SHORT`) or a dot-bracket string.
        corpus_size: well-folded sequences to pretrain on.
        offline_size: more of them, scored, as the offline split.
        min_mfe_probability: the corpus keeps random sequences whose MFE structure has at least this
            Boltzmann probability.
        seed: seeds the corpus (shared by every target of the same length).
        cache_dir: where the corpus is cached (default ``$MBO_CACHE_DIR`` or ``.cache/mbo``).
        workers: processes for building the corpus and for scoring large batches (``1``: here).
        parallel_min: the smallest batch the oracle sends to the pool.

    Rewards are float64 in ``[0, 1]``; every sequence is feasible.
    """

    alphabet = RNA
    has_oracle = True

    def __init__(self, target: int | str = 0, corpus_size: int = 3000, offline_size: int = 100,
                 min_mfe_probability: float = 0.3, seed: int = 0, cache_dir: str | None = None,
                 workers: int = 1, parallel_min: int = 256):
        self.label, self.target = resolve_target(target)
        check_integers(corpus_size=corpus_size, offline_size=offline_size, seed=seed, workers=workers,
                       parallel_min=parallel_min)
        if corpus_size < 1 or offline_size < 1:
            raise ValueError(f"corpus_size and offline_size must be >= 1, got {corpus_size}, {offline_size}")
        if not 0.0 <= min_mfe_probability < 1.0:
            raise ValueError(f"min_mfe_probability must lie in [0, 1), got {min_mfe_probability}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.length = len(self.target)
        self.name = f"inverse_folding_{self.label}"
        self.corpus_size, self.offline_size = int(corpus_size), int(offline_size)
        self.min_mfe_probability, self.seed = float(min_mfe_probability), int(seed)
        self.cache_dir, self.workers, self.parallel_min = cache_dir, int(workers), int(parallel_min)
        self._pool: dict = {}

    @cached_property
    def _well_folded(self) -> Tensor:
        return cached_well_folded(self.length, self.corpus_size + self.offline_size,
                                  self.min_mfe_probability, self.seed, self.cache_dir, self.workers)

    def pretrain_corpus(self) -> Tensor:
        """``corpus_size`` well-folded random sequences ``(N, L)`` (cached on disk)."""
        return self._well_folded[: self.corpus_size]

    def offline_dataset(self) -> SequenceDataset:
        """``offline_size`` further well-folded sequences with their rewards for this target."""
        return self._offline

    @cached_property
    def _offline(self) -> SequenceDataset:
        tokens = self._well_folded[self.corpus_size:].clone()
        return SequenceDataset(tokens, RNA, labels=self.oracle(tokens),
                               ids=[f"offline_{i}" for i in range(len(tokens))])

    def label_range(self) -> tuple[float, float]:
        return 0.0, 1.0

    def structures(self, tokens: Tensor) -> list[str]:
        """The MFE structure of each sequence ``(N, L)``."""
        seqs = RNA.decode(self.check_tokens(tokens).long().cpu())
        if self.workers == 1 or len(seqs) < self.parallel_min:
            return mfe_structures(seqs)
        return _pool_map(mfe_structures, seqs, self.workers, self._pool)

    def oracle(self, tokens: Tensor) -> Tensor:
        """``1 − bp_distance(MFE, target) / L`` per sequence: float64 ``(N,)`` on the device of ``tokens``."""
        dist = [vienna.bp_distance(s, self.target) for s in self.structures(tokens)]
        return (1.0 - torch.tensor(dist, dtype=torch.float64) / self.length).to(tokens.device)

    def is_solved(self, tokens: Tensor) -> Tensor:
        """Bool ``(N,)``: the MFE structure is exactly the target."""
        return torch.tensor([s == self.target for s in self.structures(tokens)], dtype=torch.bool)

    def close(self) -> None:
        """Shut the scoring pool down (it is also shut down at interpreter exit)."""
        if self._pool.get("pool") is not None:
            self._pool.pop("pool").shutdown()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pool"] = {}  # a pool does not pickle
        return state


def inverse_fold_baseline(task: InverseFolding, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` designs by ViennaRNA's ``RNA.inverse_fold`` from seeded uniform random starts.

    Each run is an adaptive walk that folds many candidates with ViennaRNA's own energy model (a
    white-box method: those folds are not oracle calls). ViennaRNA's random generator is seeded with
    ``RNA.init_rand(seed)`` first, so the designs are reproducible.

    Returns:
        designs LongTensor ``(n, L)`` and the walks' final distances ``(n,)`` (0 = claimed solved;
        check with :meth:`InverseFolding.is_solved`).
    """
    gen = torch.Generator().manual_seed(seed)
    vienna.init_rand(seed)
    designs, dist = [], []
    for _ in range(n):
        start = RNA.decode(torch.randint(RNA.size, (task.length,), generator=gen))
        seq, d = vienna.inverse_fold(start, task.target)
        designs.append(seq.upper())
        dist.append(d if math.isfinite(d) else math.inf)
    return RNA.encode_batch(designs), torch.tensor(dist, dtype=torch.float64)
