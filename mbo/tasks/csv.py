"""A user's own labeled CSV as a task: the offline data is all there is, so there is no oracle."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from torch import Tensor

from mbo.data.alphabet import Alphabet, get_alphabet
from mbo.data.dataset import SequenceDataset
from mbo.data.io import read_csv
from mbo.tasks.base import Task


class CSVTask(Task):
    """Designs of the length found in ``path``, pretrained and scored on that file alone.

    The file is read and validated once, at construction, so a bad CSV is refused before any training.
    The task's ``name`` carries a hash of the file's content: cached pretrained models are reused
    only for the same data.

    Args:
        path: CSV file with a header.
        sequence_column: column holding the sequences.
        label_column: column holding the measured property (higher is better).
        alphabet: ``dna``, ``rna``, ``protein``, or the letters of a custom alphabet.
        id_column: optional column of unique ids.
    """

    has_oracle = False

    def __init__(self, path: str | os.PathLike, sequence_column: str = "sequence",
                 label_column: str = "label", alphabet: str | Alphabet = "dna",
                 id_column: str | None = None):
        path = Path(path)
        alphabet = alphabet if isinstance(alphabet, Alphabet) else get_alphabet(alphabet)
        self._data = read_csv(path, alphabet, sequence_column=sequence_column,
                              label_columns=label_column, id_column=id_column)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
        self.name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', path.stem)}-{digest}"
        self.alphabet = alphabet
        self.length = self._data.length

    def pretrain_corpus(self) -> Tensor:
        """The file's sequences ``(N, L)``."""
        return self._data.tokens

    def offline_dataset(self) -> SequenceDataset:
        """The file's sequences with their labels ``(N,)``."""
        return self._data
