"""A user's own labeled CSV as a task: the offline data is all there is, so there is no oracle."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from mbo.data.alphabet import Alphabet, get_alphabet
from mbo.data.dataset import REPLICATES, SequenceDataset
from mbo.data.io import DataError, check_learnable, csv_header, read_csv
from mbo.tasks.base import Task

log = logging.getLogger(__name__)


class CSVTask(Task):
    """Designs of the length found in ``path``, pretrained and scored on that file alone.

    The file is read and validated once, at construction, so a bad CSV is refused before any training:
    every problem the readers find, fewer than 2 distinct sequences, or labels that are all equal.
    Replicate measurements of a sequence (the same sequence on several rows) are merged into one row
    (``replicates``: mean by default); ``n_replicates_merged`` says how many rows were folded. The
    task's ``name`` carries a hash of the file's content: cached pretrained models are reused only
    for the same data.

    Args:
        path: CSV file with a header.
        sequence_column: column holding the sequences.
        label_column: column holding the measured property (higher is better), or a list of
            columns, one objective each (labels ``(N, k)``: ``mbo-run`` then designs for the Pareto
            front).
        alphabet: ``dna``, ``rna``, ``protein``, or the letters of a custom alphabet.
        id_column: column of unique ids; ``None`` uses a column named ``id`` when the file has one.
            Duplicate ids are refused.
        replicates: how replicate labels combine: ``mean``, ``median``, ``max``, ``min``, ``first``.
    """

    has_oracle = False

    def __init__(self, path: str | os.PathLike, sequence_column: str = "sequence",
                 label_column: str | Sequence[str] = "label", alphabet: str | Alphabet = "dna",
                 id_column: str | None = None, replicates: str = "mean"):
        if not str(path).strip():
            raise ValueError("task.path is empty: name the CSV file of measured sequences")
        path = Path(path)
        if path.exists() and not path.is_file() and not path.is_dir():
            # A pipe (task.path=<(zcat f.csv.gz)) can be read once, and the file is read more than once.
            raise DataError(path, "is a pipe or device, not a file; write it to a file first "
                                  "(e.g. zcat data.csv.gz > data.csv)")
        # The command line turns `task.label_column=2024` or `task.alphabet=1234` into numbers.
        sequence_column = str(sequence_column)
        id_column = None if id_column is None else str(id_column)
        if not isinstance(alphabet, Alphabet):
            alphabet = str(alphabet)
        # Settings that decide how the file is read are refused like the file's own problems: before
        # any training, in one line, so a typo in task.alphabet or task.replicates is not a traceback.
        try:
            alphabet = alphabet if isinstance(alphabet, Alphabet) else get_alphabet(alphabet)
        except ValueError as err:
            raise DataError(path, f"alphabet: {err}") from None
        if replicates not in REPLICATES:
            raise DataError(path, f"replicates {replicates!r}: must be one of {', '.join(REPLICATES)}")
        # Hydra hands a list of columns over as a ListConfig; [kd] is the one column kd.
        self.label_columns = [str(c) for c in ([label_column] if isinstance(label_column, (str, int, float))
                                               else label_column)]
        label_column = self.label_columns[0] if len(self.label_columns) == 1 else self.label_columns
        if not self.label_columns:
            raise DataError(path, "label_column names no column: give the measured property's column")
        if len(self.label_columns) > 1 and replicates in ("median", "max", "min"):
            # Taken column by column they would pair one replicate's kd with another's expression: a
            # row nobody measured, which may dominate the whole front.
            raise DataError(path, f"replicates {replicates!r} takes each column's own {replicates}, which "
                                  "with several label columns makes a row no replicate measured; use mean "
                                  "or first")
        if id_column is None and "id" in csv_header(path) and "id" not in (sequence_column,
                                                                          *self.label_columns):
            id_column = "id"
        data = read_csv(path, alphabet, sequence_column=sequence_column, label_columns=label_column,
                        id_column=id_column)
        check_learnable(data, path, self.label_columns)
        self._data, self.n_replicates_merged = data.merge_replicates(replicates)
        if self.n_replicates_merged:  # replicates of one sequence may have been all that differed
            try:
                check_learnable(self._data, path, self.label_columns)
            except DataError as err:
                raise DataError(path, f"after merging {self.n_replicates_merged} replicate rows "
                                      f"(task.replicates={replicates}): {err.problem}",
                                column=err.column) from None
        self.replicates = replicates
        if self.n_replicates_merged:
            log.info("%s: merged %d replicate rows into %d distinct sequences (%s of their labels)",
                     path, self.n_replicates_merged, len(self._data), replicates)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
        self.name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.stem)}-{digest}"
        self.alphabet = alphabet
        self.length = self._data.length

    def pretrain_corpus(self) -> Tensor:
        """The file's sequences ``(N, L)``."""
        return self._data.tokens

    def offline_dataset(self) -> SequenceDataset:
        """The file's sequences with their labels ``(N,)``, or ``(N, k)`` for ``k`` label columns."""
        return self._data
