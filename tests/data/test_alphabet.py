"""Alphabet encode/decode and one-hot helpers."""

import pytest
import torch

from mbo.data import DNA, PROTEIN, RNA, Alphabet, from_one_hot, get_alphabet, one_hot


def test_builtins():
    assert (DNA.size, RNA.size, PROTEIN.size) == (4, 4, 20)
    assert len(DNA) == 4 and DNA.name == "dna"


def test_encode_decode_round_trip():
    tokens = DNA.encode("GATTACA")
    assert tokens.dtype == torch.long and tokens.tolist() == [2, 0, 3, 3, 0, 1, 0]
    assert DNA.decode(tokens) == "GATTACA"
    batch = RNA.encode_batch(["ACGU", "UUUU"])
    assert batch.shape == (2, 4) and RNA.decode(batch) == ["ACGU", "UUUU"]


def test_encode_rejects_unknown_letter():
    assert DNA.unknown_letters("ANGX") == [(1, "N"), (3, "X")]
    with pytest.raises(ValueError, match="letter 'N' at position 1 is not in alphabet 'dna'"):
        DNA.encode("ANGT")


def test_encode_batch_rejects_ragged_and_accepts_empty():
    with pytest.raises(ValueError, match="different lengths"):
        DNA.encode_batch(["AC", "ACG"])
    assert DNA.encode_batch([]).shape == (0, 0)


def test_invalid_alphabets():
    with pytest.raises(ValueError, match="at least one letter"):
        Alphabet("")
    with pytest.raises(ValueError, match="repeats letters"):
        Alphabet("ACA", "bad")


def test_get_alphabet():
    assert get_alphabet("DNA") is DNA and get_alphabet("protein") is PROTEIN
    custom = get_alphabet("01")
    assert custom.letters == "01" and custom.name == "custom"
    assert get_alphabet("acgu") is RNA  # letters, not their case: files in either case read
    assert get_alphabet("ACGT") is DNA and get_alphabet("UGCA").name == "custom"  # RNA's GC rule applies
    assert get_alphabet("ACGTacgt").letters == "ACGTacgt"  # where case is part of the alphabet, it stays


def test_one_hot_round_trip_and_soft_input():
    tokens = torch.tensor([[0, 3, 1], [2, 2, 0]])
    x = one_hot(tokens, 4)
    assert x.shape == (2, 3, 4) and x.dtype == torch.float32 and torch.equal(x.sum(-1), torch.ones(2, 3))
    assert torch.equal(from_one_hot(x), tokens)
    soft = torch.softmax(torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0)), -1)
    assert torch.equal(from_one_hot(soft), soft.argmax(-1))
    assert one_hot(tokens, 4, dtype=torch.float64).dtype == torch.float64


def test_decode_refuses_tokens_that_have_no_letter():
    for tokens, error, problem in (
            (torch.tensor([-1, 0, 1]), ValueError, r"lie in 0\.\.3, got range \[-1, 1\]"),
            (torch.tensor([0, 4]), ValueError, r"got range \[0, 4\]"),
            (torch.tensor([0.7, 1.2]), TypeError, "expected integer tokens"),
            (torch.zeros(2, 3, 4, dtype=torch.long), ValueError, r"\(L,\) or \(N, L\), got \(2, 3, 4\)")):
        with pytest.raises(error, match=problem):
            DNA.decode(tokens)
    assert DNA.decode(torch.zeros(0, 3, dtype=torch.long)) == []
