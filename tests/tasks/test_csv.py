import math

import pytest

from mbo.data.io import DataError
from mbo.tasks import CSVTask


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_task_reads_file_and_has_no_oracle(tmp_path):
    path = write(tmp_path, "seq,kd\nACGT,1.0\nTTGA,2.5\nGGGC,0.5\n")
    task = CSVTask(path, sequence_column="seq", label_column="kd")
    assert task.length == 4 and task.alphabet.name == "dna" and not task.has_oracle
    assert task.pretrain_corpus().shape == (3, 4)
    data = task.offline_dataset()
    assert data.labels.tolist() == [1.0, 2.5, 0.5]
    assert task.best_offline == pytest.approx(1.0)
    assert all(math.isnan(v) for v in task.oracle(data.tokens).tolist())


def test_task_name_follows_file_content(tmp_path):
    a = CSVTask(write(tmp_path, "sequence,label\nACGT,1\nTTTT,2\n", "x.csv"))
    b = CSVTask(write(tmp_path, "sequence,label\nACGT,1\nTTTT,3\n", "y.csv"))
    assert a.name.startswith("x-") and a.name.split("-")[1] != b.name.split("-")[1]


@pytest.mark.parametrize("text, problem", [
    ("sequence,label\nACGT,1\nACXT,2\n", "letter 'X'"),
    ("sequence,label\nACGT,1\nACG,2\n", "length"),
    ("sequence,label\nACGT,1\nACGA,nan\n", "NaN"),
    ("sequence,value\nACGT,1\n", "label"),
])
def test_bad_csv_is_refused_naming_file_and_row(tmp_path, text, problem):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        CSVTask(path)
    assert "d.csv" in str(err.value) and problem in str(err.value)


def test_replicates_are_merged_by_mean_and_counted(tmp_path):
    path = write(tmp_path, "sequence,label\nACGT,1\nTTGA,2\nACGT,4\n")
    task = CSVTask(path)
    data = task.offline_dataset()
    assert data.sequences() == ["ACGT", "TTGA"] and data.labels.tolist() == [2.5, 2.0]
    assert task.n_replicates_merged == 1
    assert CSVTask(path, replicates="max").offline_dataset().labels.tolist() == [4.0, 2.0]
    # Replicates may be all that differed: the merged labels must still rank something.
    path.write_text("sequence,label\nACGT,1\nTTGA,2\nACGT,3\n")
    with pytest.raises(DataError, match=r"after merging 1 replicate rows \(task.replicates=mean\): all 2 "
                                        "labels are equal"):
        CSVTask(path)


def test_an_id_column_is_used_when_present_and_duplicate_ids_are_refused(tmp_path):
    task = CSVTask(write(tmp_path, "id,sequence,label\na,ACGT,1\nb,TTGA,2\n"))
    assert task.offline_dataset().ids == ["a", "b"]
    with pytest.raises(DataError) as err:
        CSVTask(write(tmp_path, "id,sequence,label\na,ACGT,1\na,TTGA,2\n"))
    assert "row 3" in str(err.value) and "id 'a' is also used in row 2" in str(err.value)


@pytest.mark.parametrize("text, problem", [
    ("sequence,label\nACGT,1\nTTGA,1\n", "all 2 labels are equal"),
    ("sequence,label\nACGT,1\n", "at least 2 distinct labeled sequences"),
    ("sequence,label\nACGT,1\nTTGA,1e308\n", "too large"),
])
def test_unlearnable_labels_are_refused(tmp_path, text, problem):
    with pytest.raises(DataError, match=problem) as err:
        CSVTask(write(tmp_path, text))
    assert "d.csv" in str(err.value)


@pytest.mark.parametrize("setting, problem", [
    (dict(alphabet="dnaa"), "alphabet: 'dnaa' is neither dna, rna, protein nor a set of distinct letters "
                            "(alphabet 'custom' repeats letters ['a'])"),
    (dict(replicates="average"), "replicates 'average': must be one of mean, median, max, min, first"),
    (dict(label_column=[]), "label_column names no column: give the measured property's column"),
    (dict(label_column="sequence"), "the sequence, label and id columns must be different columns, got "
                                    "['sequence', 'sequence']"),
    (dict(label_column=["label", "label2"], replicates="max"),
     "replicates 'max' takes each column's own max, which with several label columns makes a row no "
     "replicate measured; use mean or first"),
])
def test_settings_that_cannot_read_the_file_are_refused_naming_it(tmp_path, setting, problem):
    with pytest.raises(DataError) as err:
        CSVTask(write(tmp_path, "sequence,label\nACGT,1\nTTGA,2\n"), **setting)
    assert str(err.value) == f"{tmp_path / 'd.csv'}: {problem}"


def test_a_pipe_an_empty_path_and_utf16_are_named(tmp_path):
    import os

    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="is a pipe or device, not a file; write it to a file first"):
        CSVTask(fifo)
    with pytest.raises(ValueError, match=r"task\.path is empty"):
        CSVTask("")
    path = tmp_path / "u16.csv"
    path.write_text("sequence,label\nACGT,1\nTTGA,2\n", encoding="utf-16")
    with pytest.raises(DataError, match="is UTF-16 text; save it as UTF-8"):
        CSVTask(path)
