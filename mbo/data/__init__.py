"""Data layer: alphabets, labeled sequence datasets, CSV/FASTA I/O with validation."""

from mbo.data.alphabet import DNA, PROTEIN, RNA, Alphabet, from_one_hot, get_alphabet, one_hot
from mbo.data.dataset import SequenceDataset
from mbo.data.io import DataError, read_csv, read_fasta, write_csv, write_fasta

__all__ = [
    "DNA",
    "PROTEIN",
    "RNA",
    "Alphabet",
    "DataError",
    "SequenceDataset",
    "from_one_hot",
    "get_alphabet",
    "one_hot",
    "read_csv",
    "read_fasta",
    "write_csv",
    "write_fasta",
]
