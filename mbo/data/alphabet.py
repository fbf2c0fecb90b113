"""Alphabets map letters to integer tokens and back.

Contract used across the project: sequences are ``LongTensor`` of shape ``(N, L)`` holding tokens
``0..V-1`` of an :class:`Alphabet`; models and rewards take float one-hot ``(N, L, V)`` (soft allowed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def check_tokens(tokens: Tensor, vocab_size: int, where: str, shapes: str = "(N, L)") -> Tensor:
    """``tokens`` as a LongTensor, after checking they are integer tokens in ``[0, vocab_size)`` of the
    ``shapes`` named (``"(N, L)"``, or ``"(L,) or (N, L)"``).

    Raises:
        TypeError: not an integer tensor. ValueError: another number of dimensions, or a token out of
            range; both messages start with ``where``.
    """
    if not isinstance(tokens, Tensor) or tokens.dtype not in INTEGER_DTYPES:
        got = tokens.dtype if isinstance(tokens, Tensor) else type(tokens).__name__
        raise TypeError(f"{where}: expected integer tokens {shapes}, got {got}")
    if tokens.dim() not in ((1, 2) if "(L,)" in shapes else (2,)):
        raise ValueError(f"{where}: expected tokens of shape {shapes}, got {tuple(tokens.shape)}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(f"{where}: tokens must lie in 0..{vocab_size - 1}, got range "
                         f"[{int(tokens.min())}, {int(tokens.max())}]")
    return tokens.long()


@dataclass(frozen=True)
class Alphabet:
    """An ordered set of single-character letters; token ``i`` is ``letters[i]``.

    Args:
        letters: the letters in token order, e.g. ``"ACGT"``. Each must be one character, unique.
        name: a short name used in configs and checkpoints.
    """

    letters: str
    name: str = "custom"
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.letters:
            raise ValueError("an alphabet needs at least one letter")
        dupes = sorted({c for c in self.letters if self.letters.count(c) > 1})
        if dupes:
            raise ValueError(f"alphabet {self.name!r} repeats letters {dupes}")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.letters)})

    @property
    def size(self) -> int:
        """Number of tokens V (no MASK; diffusion models add their own)."""
        return len(self.letters)

    def __len__(self) -> int:
        return self.size

    def unknown_letters(self, seq: str) -> list[tuple[int, str]]:
        """Positions (0-based) and letters of ``seq`` that are not in the alphabet."""
        return [(i, c) for i, c in enumerate(seq) if c not in self._index]

    def encode(self, seq: str) -> Tensor:
        """Encode one string to a LongTensor ``(L,)``. Raises ``ValueError`` naming the bad letter."""
        bad = self.unknown_letters(seq)
        if bad:
            pos, c = bad[0]
            raise ValueError(
                f"letter {c!r} at position {pos} is not in alphabet {self.name!r} ({self.letters})"
            )
        return torch.tensor([self._index[c] for c in seq], dtype=torch.long)

    def encode_batch(self, seqs: list[str]) -> Tensor:
        """Encode equal-length strings to ``(N, L)``."""
        lengths = {len(s) for s in seqs}
        if len(lengths) > 1:
            raise ValueError(f"sequences have different lengths {sorted(lengths)}")
        if not seqs:
            return torch.empty(0, 0, dtype=torch.long)
        return torch.stack([self.encode(s) for s in seqs])

    def decode(self, tokens: Tensor) -> str | list[str]:
        """Tokens ``(L,)`` to a string, or ``(N, L)`` to a list of strings.

        Raises:
            TypeError, ValueError: not integer tokens of one or two dimensions, or a token outside
                ``[0, V)`` (a negative one would wrap around to a letter, a MASK token has none).
        """
        check_tokens(tokens, self.size, f"decode ({self.name})", shapes="(L,) or (N, L)")
        if tokens.dim() == 1:
            return "".join(self.letters[int(t)] for t in tokens)
        return ["".join(self.letters[int(t)] for t in row) for row in tokens]


DNA = Alphabet("ACGT", "dna")
RNA = Alphabet("ACGU", "rna")
PROTEIN = Alphabet("ACDEFGHIKLMNPQRSTVWY", "protein")

_BUILTIN = {a.name: a for a in (DNA, RNA, PROTEIN)}


def get_alphabet(name_or_letters: str) -> Alphabet:
    """A built-in alphabet by name (``dna``, ``rna``, ``protein``) or by its letters in its order
    (``ACGU``), else a custom one from letters."""
    key = name_or_letters.lower()
    if key in _BUILTIN:
        return _BUILTIN[key]
    letters = name_or_letters
    if letters.islower() and len(set(letters.upper())) == len(letters):
        # `acgt` means the letters, not their case: upper-case alphabets read sequences in either case.
        letters = letters.upper()
    for builtin in _BUILTIN.values():
        if letters == builtin.letters:  # `ACGU` is RNA: its GC rule and reverse complement apply
            return builtin
    try:
        return Alphabet(letters, "custom")
    except ValueError as err:  # most often a misspelt name ('dnaa'), so say what a name may be
        raise ValueError(f"{name_or_letters!r} is neither {', '.join(_BUILTIN)} nor a set of distinct "
                         f"letters ({err})") from None


def one_hot(tokens: Tensor, vocab_size: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Tokens ``(..., L)`` (any integer dtype) to float one-hot ``(..., L, V)``."""
    if not isinstance(tokens, Tensor) or tokens.dtype not in INTEGER_DTYPES:
        got = tokens.dtype if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"one_hot: expected integer tokens, got {got}")
    return torch.nn.functional.one_hot(tokens.long(), vocab_size).to(dtype)


def from_one_hot(x: Tensor) -> Tensor:
    """Float (soft) one-hot ``(..., L, V)`` to tokens ``(..., L)`` by argmax."""
    return x.argmax(dim=-1)
