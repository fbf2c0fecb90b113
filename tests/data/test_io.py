"""CSV / FASTA readers, writers and their validation."""

import gzip
import math
from pathlib import Path

import pytest
import torch

from mbo.data import DNA, PROTEIN, DataError, SequenceDataset, read_csv, read_fasta, write_csv, write_fasta
from mbo.data.io import check_learnable, csv_header, parse_number


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(read, path, *args, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        read(path, *args, **kwargs)
    err = info.value
    assert isinstance(err, ValueError)
    assert str(path) in str(err)
    return err


def _assert_located(err: DataError, row, problem, column=None, word="row"):
    message = str(err)
    assert err.row == row
    if row is not None:
        assert f"{word} {row}" in message
    if column is not None:
        assert err.column == column and f"column {column!r}" in message
    assert problem in message


# --- read_csv: happy paths ---------------------------------------------------------------------

def test_read_csv_labels_ids_normalization(tmp_path):
    path = _write(tmp_path, "d.csv", "id,sequence,label,other\n a ,acgt ,1.5,x\n\nb,TTGA,-2,y\n")
    ds = read_csv(path, DNA, id_column="id")
    assert ds.tokens.shape == (2, 4)
    assert ds.sequences() == ["ACGT", "TTGA"]
    assert ds.ids == ["a", "b"]
    assert torch.equal(ds.labels, torch.tensor([1.5, -2.0]))


def test_read_csv_multi_label_and_unlabeled(tmp_path):
    path = _write(tmp_path, "d.csv", "sequence,y1,y2\nAC,1,2\nGT,3,4\n")
    ds = read_csv(path, "dna", label_columns=["y1", "y2"])
    assert ds.labels.shape == (2, 2) and ds.labels[1, 0] == 3
    assert read_csv(path, DNA, label_columns=None).labels is None
    assert read_csv(path, DNA, label_columns=["y2"]).labels.shape == (2, 1)


def test_read_csv_bom_and_quoted_multiline_field_keeps_line_numbers(tmp_path):
    path = _write(tmp_path, "d.csv", '\ufeffsequence,label,note\nAC,1,"two\nlines"\nAX,2,z\n')
    _assert_located(_error(read_csv, path, DNA), 4, "letter 'X' at position 2", "sequence")


# --- read_csv: one test per validation rule -----------------------------------------------------

def test_csv_missing_file(tmp_path):
    err = _error(read_csv, tmp_path / "nope.csv", DNA)
    _assert_located(err, None, "does not exist")


def test_csv_empty_file(tmp_path):
    _assert_located(_error(read_csv, _write(tmp_path, "d.csv", ""), DNA), None, "empty")


def test_csv_header_only(tmp_path):
    err = _error(read_csv, _write(tmp_path, "d.csv", "sequence,label\n"), DNA)
    _assert_located(err, None, "no data rows")


def test_csv_missing_columns_lists_header(tmp_path):
    err = _error(read_csv, _write(tmp_path, "d.csv", "seq,score\nAC,1\n"), DNA)
    _assert_located(err, 1, "missing column(s) ['sequence', 'label']")
    assert "['seq', 'score']" in str(err)


def test_csv_empty_sequence(tmp_path):
    err = _error(read_csv, _write(tmp_path, "d.csv", "sequence,label\nAC,1\n  ,2\n"), DNA)
    _assert_located(err, 3, "empty sequence", "sequence")


def test_csv_unknown_letter_matches_documented_message(tmp_path):
    path = _write(tmp_path, "data.csv", "sequence,label\nACGT,1\nACGT,1\nACGT,1\nACGT,1\nACGT,1\n"
                                        "ACXT,1\n")
    err = _error(read_csv, path, DNA)
    assert str(err) == (f"{path}, row 7, column 'sequence': letter 'X' at position 3 is not in "
                        "alphabet 'dna' (ACGT)")
    assert (err.path, err.row, err.column) == (str(path), 7, "sequence")


def test_csv_ragged_length_against_the_most_common_length(tmp_path):
    err = _error(read_csv, _write(tmp_path, "d.csv", "sequence,label\nACGT,1\nACG,2\n"), DNA)
    _assert_located(err, 3, "length 3, expected 4", "sequence")  # a tie: the first row's
    text = "sequence,label\nACGTA,1\nACGT,2\nTTGA,3\nGGCA,4\n"  # only the first row is wrong
    err = _error(read_csv, _write(tmp_path, "d.csv", text), DNA)
    _assert_located(err, 2, "length 5, expected 4 (the length of 3 of the 4 sequences)", "sequence")
    assert err.n_problem_rows == 1


def test_csv_ragged_length_against_given_length(tmp_path):
    err = _error(read_csv, _write(tmp_path, "d.csv", "sequence,label\nACGT,1\n"), DNA, length=5)
    _assert_located(err, 2, "length 4, expected 5", "sequence")


@pytest.mark.parametrize("value,problem", [("", "empty label"), ("abc", "'abc' is not a number"),
                                           ("nan", "not finite"), ("-inf", "not finite"),
                                           ("1e38", "too large (|x| > 1e+35)"), ("1e308", "too large"),
                                           ("1e400", "too large (|x| > 1e+35); rescale"),
                                           ("1,5", "'1,5' is not a number"),
                                           ("1_000", "'1_000' is not a number")])
def test_csv_bad_label(tmp_path, value, problem):
    cell = f'"{value}"' if "," in value else value
    path = _write(tmp_path, "d.csv", f"sequence,label\nAC,1\nGT,{cell}\n")
    _assert_located(_error(read_csv, path, DNA), 3, problem, "label")


@pytest.mark.parametrize("raw", ["-1e400", "1e400", "-1e39"])
def test_an_overflowing_number_is_not_a_measured_infeasible_minus_inf(raw):
    assert "too large" in parse_number(raw, "value", allow_neg_inf=True)
    assert parse_number("-inf", "value", allow_neg_inf=True) == -math.inf
    assert parse_number("-Infinity", "value", allow_neg_inf=True) == -math.inf


def test_csv_duplicate_ids_name_both_rows(tmp_path):
    path = _write(tmp_path, "d.csv", "id,sequence,label\na,AC,1\nb,AC,1\na,GT,2\n")
    err = _error(read_csv, path, DNA, id_column="id")
    _assert_located(err, 4, "id 'a' is also used in row 2", "id")
    assert "replicates" not in err.problem  # another sequence: a mistake, not a replicate
    path.write_text("id,sequence,label\na,AC,1\nb,GT,1\na,AC,2\n")
    err = _error(read_csv, path, DNA, id_column="id")
    _assert_located(err, 4, "id 'a' is also used in row 2: replicates of a sequence need ids", "id")


def test_csv_empty_id(tmp_path):
    path = _write(tmp_path, "d.csv", "id,sequence,label\n,AC,1\n")
    _assert_located(_error(read_csv, path, DNA, id_column="id"), 2, "empty id", "id")


def test_csv_wrong_field_count(tmp_path):
    path = _write(tmp_path, "d.csv", "sequence,label\nAC,1\nGT,2,3\n")
    _assert_located(_error(read_csv, path, DNA), 3, "3 fields, but the header has 2")


def test_csv_malformed_quoting(tmp_path):
    path = _write(tmp_path, "d.csv", 'sequence,label\nAC,1\n"GT"x,2\n')
    _assert_located(_error(read_csv, path, DNA), 3, "malformed CSV")


def test_csv_not_utf8(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"sequence,label\nAC,1\nG\xff,2\n")
    _assert_located(_error(read_csv, path, DNA), 3, "not valid UTF-8")


def test_csv_gzip_compressed_is_named(tmp_path):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(b"sequence,label\nAC,1\nGT,2\n"))
    _assert_located(_error(read_csv, path, DNA), None, "is gzip-compressed; decompress it first")


def test_csv_unreadable_file(tmp_path, monkeypatch):
    path = _write(tmp_path, "d.csv", "sequence,label\nAC,1\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod 000 does not stop root, who runs CI
    _assert_located(_error(read_csv, path, DNA), None, "cannot be read: Permission denied")


@pytest.mark.parametrize("columns", [dict(label_columns="sequence"), dict(id_column="label"),
                                     dict(label_columns=["label", "label"])])
def test_csv_one_column_in_two_roles(tmp_path, columns):
    path = _write(tmp_path, "d.csv", "sequence,label\nAC,1\nGT,2\n")
    _assert_located(_error(read_csv, path, DNA, **columns), None, "must be different columns")


def test_csv_reports_first_problem_and_counts_rows(tmp_path):
    path = _write(tmp_path, "d.csv", "sequence,label\nAC,1\nAZ,x\nGT,nan\nACG,1\n")
    err = _error(read_csv, path, DNA)
    _assert_located(err, 3, "letter 'Z'", "sequence")
    assert err.n_problem_rows == 3 and "3 rows have problems" in str(err)


# --- write_csv ---------------------------------------------------------------------------------

def _dataset(n=3, labels=True, ids=True):
    seqs = ["ACGT", "TTGA", "CCCC", "GAGA"][:n]
    return SequenceDataset.from_strings(
        seqs, DNA, labels=[0.1, -2.5, 3e-8, 7.0][:n] if labels else None,
        ids=[f"s{i}" for i in range(n)] if ids else None)


def test_csv_round_trip_with_extra_columns(tmp_path):
    ds = _dataset()
    path = write_csv(tmp_path / "out.csv", ds, extra_columns={"mean": torch.tensor([0.1, 0.2, 0.3]),
                                                              "note": ["a", "b,c", 'q"'], })
    assert path.read_text().splitlines()[0] == "id,sequence,label,mean,note"
    assert path.read_text().splitlines()[1] == "s0,ACGT,0.1,0.1,a"
    back = read_csv(path, DNA, id_column="id")
    assert torch.equal(back.tokens, ds.tokens) and back.ids == ds.ids
    assert torch.equal(back.labels, ds.labels)
    means = read_csv(path, DNA, label_columns="mean").labels
    assert torch.equal(means, torch.tensor([0.1, 0.2, 0.3]))


def test_csv_round_trip_multi_label_no_ids(tmp_path):
    ds = SequenceDataset.from_strings(["AC", "GT"], DNA, labels=[[1.0, 2.0], [3.0, 4.0]])
    path = write_csv(tmp_path / "out.csv", ds)
    back = read_csv(path, DNA, label_columns=["label_0", "label_1"])
    assert torch.equal(back.labels, ds.labels) and back.ids is None


def test_write_csv_refuses_overwrite_and_keeps_content(tmp_path):
    path = _write(tmp_path, "out.csv", "precious\n")
    with pytest.raises(FileExistsError):
        write_csv(path, _dataset())
    assert path.read_text() == "precious\n"
    write_csv(path, _dataset(), overwrite=True)
    assert read_csv(path, DNA).sequences() == _dataset().sequences()


def test_write_csv_bad_extra_column(tmp_path):
    with pytest.raises(ValueError, match="'mean' has 2 entries, the dataset has 3"):
        write_csv(tmp_path / "out.csv", _dataset(), extra_columns={"mean": [1, 2]})
    with pytest.raises(ValueError, match="clash"):
        write_csv(tmp_path / "out.csv", _dataset(), extra_columns={"label": [1, 2, 3]})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_temp_files(tmp_path):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_csv(tmp_path / "out.csv", _dataset(), extra_columns={"x": [1, 2, Unprintable()]})
    assert list(tmp_path.iterdir()) == []


# --- FASTA -------------------------------------------------------------------------------------

def test_fasta_multiline_records(tmp_path):
    path = _write(tmp_path, "s.fa", ">a first\nAC\ngt\n\n>b\nTTGA\n")
    ds = read_fasta(path, DNA)
    assert ds.ids == ["a", "b"] and ds.sequences() == ["ACGT", "TTGA"] and ds.labels is None


def test_fasta_round_trip(tmp_path):
    ds = SequenceDataset.from_strings(["MKV", "AWY"], PROTEIN, ids=["p1", "p2"])
    back = read_fasta(write_fasta(tmp_path / "o.fasta", ds), PROTEIN)
    assert torch.equal(back.tokens, ds.tokens) and back.ids == ds.ids
    plain = read_fasta(write_fasta(tmp_path / "p.fasta", _dataset(ids=False)), DNA)
    assert plain.ids == ["seq0", "seq1", "seq2"]


def test_fasta_missing_and_empty_file(tmp_path):
    _assert_located(_error(read_fasta, tmp_path / "x.fa", DNA), None, "does not exist")
    _assert_located(_error(read_fasta, _write(tmp_path, "e.fa", "\n"), DNA), None, "empty")


def test_fasta_sequence_before_header(tmp_path):
    err = _error(read_fasta, _write(tmp_path, "s.fa", "\nACGT\n>a\nACGT\n"), DNA)
    _assert_located(err, 2, "before the first '>' header", word="line")


def test_fasta_header_without_id(tmp_path):
    err = _error(read_fasta, _write(tmp_path, "s.fa", ">a\nAC\n> \nGT\n"), DNA)
    _assert_located(err, 3, "has no id", word="line")


def test_fasta_empty_record(tmp_path):
    err = _error(read_fasta, _write(tmp_path, "s.fa", ">a\nAC\n>b\n>c\nGT\n"), DNA)
    _assert_located(err, 3, "record 'b' has no sequence", word="line")


def test_fasta_duplicate_ids(tmp_path):
    err = _error(read_fasta, _write(tmp_path, "s.fa", ">a x\nAC\n>a y\nGT\n"), DNA)
    _assert_located(err, 3, "id 'a' is also used on line 1", word="line")


def test_fasta_unknown_letter_on_its_line(tmp_path):
    err = _error(read_fasta, _write(tmp_path, "s.fa", ">a\nACG\nTNA\n"), DNA)
    _assert_located(err, 3, "letter 'N' at position 5", word="line")


def test_fasta_ragged_lengths(tmp_path):
    err = _error(read_fasta, _write(tmp_path, "s.fa", ">a\nACGT\n>b\nACG\n"), DNA)
    _assert_located(err, 3, "length 3, expected 4", word="line")
    err = _error(read_fasta, _write(tmp_path, "t.fa", ">a\nACGT\n"), DNA, length=3)
    _assert_located(err, 1, "length 4, expected 3", word="line")


def test_write_fasta_refuses_overwrite_and_bad_ids(tmp_path):
    path = _write(tmp_path, "o.fa", "precious\n")
    with pytest.raises(FileExistsError):
        write_fasta(path, _dataset())
    assert path.read_text() == "precious\n"
    bad = SequenceDataset.from_strings(["AC"], DNA, ids=["has space"])
    with pytest.raises(ValueError, match="cannot be a FASTA id"):
        write_fasta(tmp_path / "b.fa", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.fa"]


def test_check_learnable_refuses_constant_labels_and_a_single_sequence(tmp_path):
    path = _write(tmp_path, "d.csv", "sequence,kd\nAC,2.5\nGT,2.5\n")
    data = read_csv(path, DNA, label_columns="kd")
    with pytest.raises(DataError) as err:
        check_learnable(data, path, "kd")
    _assert_located(err.value, None, "all 2 labels are equal as float32 (2.5)", "kd")
    # Shown as written, not as the float64 view of its float32 (0.20000000298023224); and labels that
    # differ only past float32's precision read the same, which the message says.
    tiny = read_csv(_write(tmp_path, "t.csv", "sequence,kd\nAC,0.2\nGT,0.2000000001\n"), DNA,
                    label_columns="kd")
    with pytest.raises(DataError, match=r"equal as float32 \(0\.2\).*subtract a constant"):
        check_learnable(tiny, path, "kd")
    one = read_csv(_write(tmp_path, "one.csv", "sequence,kd\nAC,1\nAC,2\n"), DNA, label_columns="kd")
    with pytest.raises(DataError, match="at least 2 distinct labeled sequences to fit a reward model, got 1"):
        check_learnable(one, tmp_path / "one.csv", "kd")
    check_learnable(read_csv(_write(tmp_path, "ok.csv", "sequence,kd\nAC,1\nGT,1e-9\n"), DNA,
                             label_columns="kd"), tmp_path / "ok.csv", "kd")


def test_csv_header(tmp_path):
    path = _write(tmp_path, "d.csv", "\nid, sequence ,label\nx,AC,1\n")
    assert csv_header(path) == ["id", "sequence", "label"]
    with pytest.raises(DataError, match="does not exist"):
        csv_header(tmp_path / "missing.csv")


def test_a_workbook_and_a_semicolon_csv_are_named(tmp_path):
    import io
    import zipfile

    book = io.BytesIO()
    with zipfile.ZipFile(book, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    path = tmp_path / "d.csv"
    path.write_bytes(book.getvalue())
    _assert_located(_error(read_csv, path, DNA), None, "is a zip archive (an Excel .xlsx")
    path.write_text("sequence;label\nAC;1,5\nGT;2\n")  # Excel in a decimal-comma locale
    _assert_located(_error(read_csv, path, DNA), 1, "looks separated by ';': save it as comma-separated")


def test_labels_that_float32_cannot_tell_apart_are_warned_about(tmp_path, caplog):
    path = _write(tmp_path, "d.csv", "sequence,label\nAC,1000001.76\nGT,1000001.74\nCA,3\n")
    with caplog.at_level("WARNING", logger="mbo.data.io"):
        read_csv(path, DNA)
    assert "1 distinct labels became equal in float32" in caplog.text
