"""Read and write sequence datasets as CSV and FASTA, with validation that names the file, row and problem.

Readers check the whole file and raise :class:`DataError` for the first problem found (the one nearest
the top of the file), saying how many rows have problems in total, so a user fixes the file once
rather than one error per run. Writers are atomic and refuse to replace an existing file unless asked.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mbo.atomic import atomic_path
from mbo.data.alphabet import Alphabet, get_alphabet
from mbo.data.dataset import SequenceDataset
from mbo.display import plural

__all__ = ["DataError", "Problems", "check_learnable", "csv_header", "csv_records", "malformed_row",
           "parse_number", "read_csv", "read_fasta", "read_text", "require_columns", "write_csv",
           "write_fasta"]


# Labels are standardized and the reward models' predictions mapped back in float32 (max 3.4e38),
# several standard deviations beyond the labels: 1e35 leaves that room (1e38 labels gave inf rewards).
LABEL_MAX = 1e35


log = logging.getLogger(__name__)


class DataError(ValueError):
    """A problem in a data file, located so a user can find it in an editor.

    Attributes:
        path: the file, as the caller named it.
        row: 1-based line number in the file (the header of a CSV is line 1), or ``None`` when the
            problem is about the whole file.
        column: the CSV column name, or ``None``.
        problem: what is wrong, in words. Letter positions in it are 1-based.
        n_problem_rows: how many rows (records, for FASTA) have a problem in total; at least 1.
    """

    def __init__(self, path: str | os.PathLike, problem: str, row: int | None = None,
                 column: str | None = None, n_problem_rows: int = 1, row_word: str = "row") -> None:
        self.path = str(path)
        self.row = row
        self.column = column
        self.problem = problem
        self.n_problem_rows = n_problem_rows
        where = self.path
        if row is not None:
            where += f", {row_word} {row}"
        if column is not None:
            where += f", column {column!r}"
        message = f"{where}: {problem}"
        if n_problem_rows > 1:
            message += f" ({n_problem_rows} {row_word}s have problems in total; this is the first)"
        super().__init__(message)


class Problems:
    """Collects the first problem per row while a reader scans a whole file; :meth:`raise_first`
    raises a :class:`DataError` for the problem nearest the top, with the count of rows that have one."""

    def __init__(self, path: str | os.PathLike, row_word: str) -> None:
        self.path = path
        self.row_word = row_word
        self.first: tuple[int, str | None, str] | None = None
        self.rows: set[int] = set()

    def add(self, row: int, problem: str, column: str | None = None) -> None:
        if self.first is None or row < self.first[0]:
            self.first = (row, column, problem)
        self.rows.add(row)

    def raise_first(self) -> None:
        if self.first is not None:
            row, column, problem = self.first
            raise DataError(self.path, problem, row, column, len(self.rows), self.row_word)


def read_text(path: str | os.PathLike) -> str:
    """The file's text (UTF-8, optional BOM); a missing, unreadable, gzip-compressed or undecodable
    file is a :class:`DataError`."""
    return decode_text(path, read_file_bytes(path))


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes, read once (a pipe gives them to its first reader only); a missing or
    unreadable file or a folder is a :class:`DataError`."""
    p = Path(path)
    if not p.exists():
        raise DataError(path, "file does not exist")
    if p.is_dir():
        raise DataError(path, "is a directory, not a file")
    try:
        return p.read_bytes()
    except OSError as e:  # no read permission, a dangling mount, a FIFO that errs, ...
        raise DataError(path, f"cannot be read: {e.strerror or e}") from None


def decode_text(path: str | os.PathLike, data: bytes) -> str:
    """The text of ``data``, the bytes read from ``path`` (named in errors), checked as
    :func:`read_text` checks a file's."""
    if data[:2] == b"\x1f\x8b":  # its first bytes would only say "not UTF-8"; name the real cause
        raise DataError(path, "is gzip-compressed; decompress it first (gunzip)")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # the byte-order mark of UTF-16 ("Unicode text" in Excel)
        raise DataError(path, "is UTF-16 text; save it as UTF-8 (CSV UTF-8 in Excel)")
    if data[:4] == b"PK\x03\x04":  # a zip archive, which is what .xlsx and .ods workbooks are
        raise DataError(path, "is a zip archive (an Excel .xlsx or .ods workbook?); save it as CSV "
                              "(comma-separated, UTF-8)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(path, f"byte {data[e.start]:#04x} is not valid UTF-8 text", line) from None


def _as_alphabet(alphabet: Alphabet | str) -> Alphabet:
    return alphabet if isinstance(alphabet, Alphabet) else get_alphabet(alphabet)


def _normalize(seq: str, alphabet: Alphabet) -> str:
    """Strip surrounding whitespace; upper-case when the alphabet is upper-case (``acgt`` -> ``ACGT``)."""
    seq = seq.strip()
    return seq.upper() if alphabet.letters.isupper() else seq


def _unknown_letter_problem(seq: str, alphabet: Alphabet, offset: int = 0) -> str | None:
    bad = alphabet.unknown_letters(seq)
    if not bad:
        return None
    pos, letter = bad[0]
    more = f" ({len(bad)} unknown letters in this sequence)" if len(bad) > 1 else ""
    return (f"letter {letter!r} at position {offset + pos + 1} is not in alphabet "
            f"{alphabet.name!r} ({alphabet.letters}){more}")


def _length_problem(got: int, expected: int, source: str) -> str:
    return f"sequence has length {got}, expected {expected} ({source})"


def _encode(seqs: list[str], alphabet: Alphabet, length: int) -> Tensor:
    """Validated equal-length strings to LongTensor ``(N, L)``."""
    index = {c: i for i, c in enumerate(alphabet.letters)}
    tokens = torch.tensor([[index[c] for c in s] for s in seqs], dtype=torch.long)
    return tokens.reshape(len(seqs), length)


def _label_columns_list(label_columns: str | Sequence[str] | None) -> list[str]:
    if label_columns is None:
        return []
    if isinstance(label_columns, str):
        return [label_columns]
    return list(label_columns)


def csv_records(path: str | os.PathLike, text: str) -> tuple[list[str], int, list[tuple[int, list[str]]]]:
    """Split CSV ``text`` (read from ``path``) into its header, the header's line, and the non-blank
    data rows as ``(first line of the record, fields)``; line numbers are 1-based.

    Raises:
        DataError: malformed CSV (with the line), or no header at all.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line, start = 0, 1
    records: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                if header is None:
                    header, header_line = [f.strip() for f in fields], start
                else:
                    records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(path, f"malformed CSV: {e}", reader.line_num) from None
    if header is None:
        raise DataError(path, "file is empty (expected a header row and data rows)")
    return header, header_line, records


def csv_header(path: str | os.PathLike) -> list[str]:
    """The column names of the CSV file at ``path`` (its first non-blank row).

    Raises:
        DataError: a missing, unreadable or empty file.
    """
    return csv_records(path, read_text(path))[0]


def malformed_row(fields: int, columns: int) -> str:
    """The problem of a CSV row with ``fields`` fields under a header of ``columns``."""
    return f"malformed CSV: {plural(fields, 'field')}, but the header has {columns}"


def require_columns(path: str | os.PathLike, header: list[str], header_line: int,
                    wanted: Sequence[str]) -> dict[str, int]:
    """Each of ``wanted``'s column index in ``header``.

    Raises:
        DataError: a column is missing or appears twice (naming the header's line).
    """
    missing = [c for c in wanted if c not in header]
    if missing:
        separator = next((sep for sep in (";", "\t") if len(header) == 1 and sep in header[0]), None)
        hint = (f" (the file looks separated by {separator!r}: save it as comma-separated CSV)"
                if separator else "")
        raise DataError(path, f"missing column(s) {missing}; the header has {header}{hint}", header_line)
    repeated = [c for c in wanted if header.count(c) > 1]
    if repeated:
        raise DataError(path, f"column(s) {repeated} appear more than once in the header", header_line)
    return {c: header.index(c) for c in wanted}


def parse_number(raw: str, what: str = "label", allow_neg_inf: bool = False) -> float | str:
    """The cell ``raw`` as a float that fits float32, or a sentence saying what is wrong with it.

    Args:
        raw: the cell's text, stripped.
        what: the word for the value in messages ("label", "value").
        allow_neg_inf: accept ``-inf`` (a measured infeasible / failed design); NaN and +inf never.
    """
    if not raw:
        return f"empty {what}"
    # What to write instead, where a measurement can have failed.
    hint = "; write -inf for a failed or infeasible design, or leave its row out" if allow_neg_inf else ""
    if "_" in raw:  # Python reads 1_000 as 1000; no spreadsheet or instrument writes that: a typo
        return f"{what} {raw!r} is not a number{hint}"
    try:
        value = float(raw)
    except ValueError:
        return f"{what} {raw!r} is not a number{hint}"
    if math.isinf(value) and raw.lstrip("+-").lower() not in ("inf", "infinity"):
        # A finite number that overflowed (1e400): neither +inf nor a measured-infeasible -inf.
        return f"{what} {raw!r} is too large (|x| > {LABEL_MAX:.0e}); rescale the column"
    if allow_neg_inf and value == -math.inf:
        return value
    if not math.isfinite(value):
        if allow_neg_inf:
            if math.isnan(value):
                return f"{what} {raw!r} is NaN; write -inf for a measured infeasible / failed design"
            return f"{what} {raw!r} is +inf; only -inf (measured infeasible / failed) is allowed"
        return f"{what} {raw!r} is not finite (NaN or inf {what}s are not allowed)"
    if abs(value) > LABEL_MAX:
        return f"{what} {raw!r} is too large (|x| > {LABEL_MAX:.0e}); rescale the column"
    return value


def read_csv(path: str | os.PathLike, alphabet: Alphabet | str, sequence_column: str = "sequence",
             label_columns: str | Sequence[str] | None = "label", id_column: str | None = None,
             length: int | None = None, length_source: str | None = None) -> SequenceDataset:
    """Read a CSV of sequences with optional labels and ids into a :class:`SequenceDataset`.

    Sequences are stripped of surrounding whitespace and upper-cased when the alphabet's letters are
    upper-case. Blank lines are skipped. Extra columns are ignored.

    Args:
        path: the CSV file (UTF-8, optional BOM), with a header row.
        alphabet: an :class:`Alphabet` or a built-in alphabet's name.
        sequence_column: the column holding the sequences.
        label_columns: one column name (labels ``(N,)``), a list of names (labels ``(N, k)``), or
            ``None`` for an unlabeled file.
        id_column: a column of unique ids, or ``None``.
        length: the required sequence length; by default the first row's length.
        length_source: where ``length`` came from, for the message of a row of another length (e.g.
            "the length of data.csv's sequences"); by default "length=L was given".

    Returns:
        A dataset with tokens ``(N, L)``, float32 labels ``(N,)`` / ``(N, k)`` or ``None``, and ids.

    Raises:
        DataError: naming the file, row (line number), column and problem, for: a missing, unreadable
            or empty file, one column asked for in two roles, no data rows, missing or repeated
            columns, rows with the wrong number of fields, empty
            sequences, unknown letters, ragged lengths, empty / non-numeric / NaN / inf labels, and
            empty or duplicate ids.
    """
    alphabet = _as_alphabet(alphabet)
    labels_wanted = _label_columns_list(label_columns)
    wanted = [sequence_column, *labels_wanted] + ([id_column] if id_column is not None else [])
    if len(set(wanted)) != len(wanted):
        raise DataError(path, f"the sequence, label and id columns must be different columns, got "
                              f"{wanted}")

    header, header_line, records = csv_records(path, read_text(path))
    col = require_columns(path, header, header_line, wanted)
    if not records:
        raise DataError(path, "no data rows after the header")

    problems = Problems(path, "row")
    seqs: list[str] = []
    labels: list[list[float]] = []
    ids: list[str] = []
    id_rows: dict[str, tuple[int, str]] = {}  # id -> its first row and sequence
    expected, expected_source = length, length_source or f"length={length} was given"
    if length is None:  # the most common length, so the odd row out is the one named (even row 2)
        lengths = Counter(len(_normalize(f[col[sequence_column]], alphabet)) for _, f in records
                          if len(f) == len(header) and f[col[sequence_column]].strip())
        if lengths:
            (expected, count), = lengths.most_common(1)
            expected_source = f"the length of {count} of the {lengths.total()} sequences"
    for line, fields in records:
        if len(fields) != len(header):
            problems.add(line, malformed_row(len(fields), len(header)))
            continue
        seq = _normalize(fields[col[sequence_column]], alphabet)
        if not seq:
            problems.add(line, "empty sequence", sequence_column)
        else:
            bad = _unknown_letter_problem(seq, alphabet)
            if bad:
                problems.add(line, bad, sequence_column)
            elif len(seq) != expected:
                problems.add(line, _length_problem(len(seq), expected, expected_source),
                             sequence_column)
        seqs.append(seq)
        row_labels = []
        for name in labels_wanted:
            raw = fields[col[name]].strip()
            value = parse_number(raw)
            if isinstance(value, str):
                problems.add(line, value, name)
            else:
                row_labels.append(value)
        labels.append(row_labels)
        if id_column is not None:
            ident = fields[col[id_column]].strip()
            if not ident:
                problems.add(line, "empty id", id_column)
            elif ident in id_rows:
                row, first_seq = id_rows[ident]
                hint = (": replicates of a sequence need ids of their own (v1_a, v1_b); their labels are "
                        "then merged" if first_seq == seq else "")
                problems.add(line, f"id {ident!r} is also used in row {row}{hint}", id_column)
            else:
                id_rows[ident] = (line, seq)
            ids.append(ident)
    problems.raise_first()

    assert expected is not None  # there is at least one valid row here
    tokens = _encode(seqs, alphabet, expected)
    label_tensor = None
    if labels_wanted:
        label_tensor = torch.tensor(labels, dtype=torch.float32)
        merged = len(set(map(tuple, labels))) - len(torch.unique(label_tensor, dim=0))
        if merged > 0:  # float32 keeps about 7 significant digits: 1000001.789 reads as 1000001.75
            log.warning("%s: %d distinct labels became equal in float32 (about 7 significant digits); "
                        "subtract a constant or change the unit to keep them apart", path, merged)
        if isinstance(label_columns, str):
            label_tensor = label_tensor.squeeze(-1)
    return SequenceDataset(tokens, alphabet, label_tensor, ids if id_column is not None else None)


def check_learnable(dataset: SequenceDataset, path: str | os.PathLike, column: str | Sequence[str]) -> None:
    """Refuse labels a reward model cannot learn from: fewer than 2 distinct sequences, or a label
    column whose values are all equal (there is nothing to rank designs by).

    Args:
        column: the label column's name, or the names of the columns of labels ``(N, k)``.

    Raises:
        DataError: naming ``path`` and the label ``column``.
    """
    columns = [column] if isinstance(column, str) else list(column)
    n_seqs = len({tuple(r) for r in dataset.tokens.tolist()})
    if n_seqs < 2:
        raise DataError(path, f"need at least 2 distinct labeled sequences to fit a reward model, got "
                              f"{n_seqs}", column=columns[0])
    y = dataset.labels.reshape(len(dataset), -1)
    for j, name in enumerate(columns):
        if bool((y[:, j] == y[0, j]).all()):
            # In the labels' dtype (float32): 0.2, not the 0.20000000298023224 of its float64 view.
            value = _format_value(y[0, j].cpu().numpy())
            dtype = str(y.dtype).removeprefix("torch.")
            hint = (" (labels that differ by less than 1 part in 10^7 read the same: subtract a constant "
                    "first)") if y.dtype == torch.float32 else ""
            raise DataError(path, f"all {len(y)} labels are equal as {dtype} ({value}): there is nothing to "
                                  f"learn which designs are better{hint}", column=name)


def _format_value(value) -> str:
    """A cell's text; floats use the shortest text that reads back to the same value in their dtype."""
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, np.generic):
        return str(value.item()) if not isinstance(value, np.floating) else str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _column_values(name: str, values, n: int) -> list:
    """Per-row values of an extra column; a tensor or array must be 1-D with ``n`` entries."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"extra column {name!r} must be 1-D, got shape {values.shape}")
        values = list(values)
    elif isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"extra column {name!r} must be a sequence of {n} values, "
                         f"got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"extra column {name!r} has {len(values)} entries, the dataset has {n} rows")
    return list(values)


def write_csv(path: str | os.PathLike, dataset: SequenceDataset,
              extra_columns: dict[str, Sequence] | None = None, overwrite: bool = False,
              sequence_column: str = "sequence", label_columns: str | Sequence[str] | None = None,
              id_column: str | None = "id") -> Path:
    """Write a dataset as CSV, atomically; reads back with :func:`read_csv`.

    Columns, in order: ids (if the dataset has ids and ``id_column`` is not ``None``), sequence,
    labels (if any), then ``extra_columns`` in their order.

    Args:
        path: the file to write.
        dataset: the sequences, with optional labels and ids.
        extra_columns: name -> ``N`` values (list, 1-D array or tensor), e.g. predicted mean and std.
        overwrite: replace an existing file; otherwise an existing file is an error and is untouched.
        sequence_column: name of the sequence column.
        label_columns: names for the labels: for labels ``(N,)`` a name (default ``"label"``), for
            labels ``(N, k)`` ``k`` names (default ``label_0 .. label_{k-1}``).
        id_column: name of the id column, or ``None`` to leave ids out.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: column names clash, or an extra column does not have ``N`` 1-D entries.
        TypeError: an extra column is not a sequence (a list, 1-D array or tensor).
    """
    n = len(dataset)
    labels = dataset.labels
    label_names: list[str] = []
    if labels is not None:
        k = 1 if labels.dim() == 1 else labels.shape[1]
        if label_columns is None:
            label_names = ["label"] if labels.dim() == 1 else [f"label_{j}" for j in range(k)]
        else:
            label_names = _label_columns_list(label_columns)
        if len(label_names) != k:
            raise ValueError(f"{len(label_names)} label column names {label_names} for {k} label "
                             f"column(s)")
        labels = labels.detach().cpu().reshape(n, k).numpy()
    write_ids = dataset.ids is not None and id_column is not None
    extra = {name: _column_values(name, values, n) for name, values in (extra_columns or {}).items()}
    header = ([id_column] if write_ids else []) + [sequence_column, *label_names, *extra]
    if len(set(header)) != len(header):
        raise ValueError(f"column names clash: {header}")

    seqs = dataset.sequences()
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for i in range(n):
            row = [dataset.ids[i]] if write_ids else []
            row.append(seqs[i])
            if labels is not None:
                row.extend(str(v) for v in labels[i])
            row.extend(_format_value(values[i]) for values in extra.values())
            writer.writerow(row)
    return Path(path)


def read_fasta(path: str | os.PathLike, alphabet: Alphabet | str,
               length: int | None = None, length_source: str | None = None) -> SequenceDataset:
    """Read a FASTA file into an unlabeled :class:`SequenceDataset`.

    Each record is a ``>`` header line whose first whitespace-separated token is the id, followed by
    one or more sequence lines that are joined. Blank lines and surrounding whitespace are ignored;
    sequences are upper-cased when the alphabet is upper-case.

    Args:
        path: the FASTA file (UTF-8).
        alphabet: an :class:`Alphabet` or a built-in alphabet's name.
        length: the required sequence length; by default the first record's length.
        length_source: where ``length`` came from, as in :func:`read_csv`.

    Returns:
        A dataset with tokens ``(N, L)``, ``labels=None`` and the header ids.

    Raises:
        DataError: naming the file, line and problem, for: a missing or empty file, sequence before
            any header, a header without an id, a record without sequence, duplicate ids, unknown
            letters, ragged lengths.
    """
    alphabet = _as_alphabet(alphabet)
    text = read_text(path)
    problems = Problems(path, "line")
    # One record: header line, id, and its sequence lines as (line number, text).
    records: list[tuple[int, str, list[tuple[int, str]]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(">"):
            tokens = line[1:].split()
            if not tokens:
                problems.add(number, "header '>' has no id")
            records.append((number, tokens[0] if tokens else "", []))
        elif not records:
            problems.add(number, "sequence before the first '>' header")
        else:
            records[-1][2].append((number, _normalize(line, alphabet)))

    if not text.strip():
        raise DataError(path, "file is empty")
    if not records and problems.first is None:
        raise DataError(path, "file has no FASTA records (no '>' header lines)")

    seqs: list[str] = []
    ids: list[str] = []
    id_lines: dict[str, int] = {}
    expected, expected_source = length, length_source or f"length={length} was given"
    for header_line, ident, lines in records:
        if ident:
            if ident in id_lines:
                problems.add(header_line, f"id {ident!r} is also used on line {id_lines[ident]}")
            else:
                id_lines[ident] = header_line
        ids.append(ident)
        seq = "".join(s for _, s in lines)
        seqs.append(seq)
        if not seq:
            problems.add(header_line, f"record {ident!r} has no sequence")
            continue
        if expected is None:
            expected, expected_source = len(seq), f"the length of the record on line {header_line}"
        offset, bad = 0, None
        for number, part in lines:  # locate an unknown letter on its own line
            bad = _unknown_letter_problem(part, alphabet, offset)
            if bad:
                problems.add(number, f"record {ident!r}: {bad}")
                break
            offset += len(part)
        if not bad and len(seq) != expected:
            problems.add(header_line, f"record {ident!r}: "
                                      f"{_length_problem(len(seq), expected, expected_source)}")
    problems.raise_first()

    assert expected is not None
    return SequenceDataset(_encode(seqs, alphabet, expected), alphabet, None, ids)


def write_fasta(path: str | os.PathLike, dataset: SequenceDataset, overwrite: bool = False) -> Path:
    """Write a dataset as FASTA, atomically, one line per sequence; reads back with :func:`read_fasta`.

    Ids come from ``dataset.ids`` (or ``seq0 .. seq{N-1}`` when it has none). Labels are not written:
    use :func:`write_csv` to keep them.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: an id is empty or contains whitespace (it would not read back as the same id).
    """
    n = len(dataset)
    ids = dataset.ids if dataset.ids is not None else [f"seq{i}" for i in range(n)]
    for i, ident in enumerate(ids):
        if not ident or ident.split() != [ident] or ident.startswith(">"):
            raise ValueError(f"id {ident!r} of row {i} cannot be a FASTA id (empty, whitespace or "
                             f"a leading '>')")
    seqs = dataset.sequences()
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for ident, seq in zip(ids, seqs, strict=True):
            f.write(f">{ident}\n{seq}\n")
    return Path(path)
