"""SequenceDataset construction, validation and subsetting."""

import pytest
import torch

from mbo.data import DNA, SequenceDataset


def _ds():
    return SequenceDataset.from_strings(["ACGT", "TTGA", "CCCC"], DNA, labels=[1.0, 2.0, 3.0],
                                        ids=["a", "b", "c"])


def test_basic_properties():
    ds = _ds()
    assert len(ds) == 3 and ds.length == 4
    assert ds.sequences() == ["ACGT", "TTGA", "CCCC"]
    assert ds.labels.dtype == torch.float32
    x = ds.one_hot()
    assert x.shape == (3, 4, 4) and torch.equal(x.argmax(-1), ds.tokens)


@pytest.mark.parametrize("index", [torch.tensor([True, False, True]), [0, 2], torch.tensor([0, 2])])
def test_subset_by_mask_or_indices(index):
    sub = _ds().subset(index)
    assert sub.sequences() == ["ACGT", "CCCC"] and sub.ids == ["a", "c"]
    assert sub.labels.tolist() == [1.0, 3.0]


def test_subset_by_slice():
    sub = _ds().subset(slice(1, None))
    assert sub.ids == ["b", "c"] and len(sub) == 2


def test_multi_column_labels_and_unlabeled():
    ds = SequenceDataset.from_strings(["AC", "GT"], DNA, labels=[[1, 2], [3, 4]])
    assert ds.labels.shape == (2, 2) and ds.ids is None
    assert SequenceDataset.from_strings(["AC"], DNA).labels is None
    assert SequenceDataset(torch.empty(0, 5, dtype=torch.long), DNA).sequences() == []


@pytest.mark.parametrize("kwargs,match", [
    ({"tokens": torch.zeros(2, 3)}, "LongTensor"),
    ({"tokens": torch.zeros(3, dtype=torch.long)}, "LongTensor"),
    ({"tokens": torch.full((2, 3), 4)}, "0..3"),
    ({"labels": torch.zeros(3)}, "labels must be"),
    ({"labels": torch.tensor([0.0, float("nan")])}, r"NaN or \+inf"),
    ({"ids": ["a"]}, "1 ids for 2"),
    ({"ids": ["a", "a"]}, "not unique"),
])
def test_validation(kwargs, match):
    args = {"tokens": torch.zeros(2, 3, dtype=torch.long), "alphabet": DNA} | kwargs
    with pytest.raises(ValueError, match=match):
        SequenceDataset(**args)


@pytest.mark.parametrize("how, expected", [("mean", [2.0, 5.0]), ("median", [1.0, 5.0]),
                                           ("max", [4.0, 5.0]), ("first", [1.0, 5.0])])
def test_merge_replicates(how, expected):
    ds = SequenceDataset.from_strings(["AC", "GT", "AC", "AC"], DNA, labels=[1.0, 5.0, 1.0, 4.0],
                                      ids=["a", "b", "c", "d"])
    merged, n = ds.merge_replicates(how)
    assert n == 2 and merged.sequences() == ["AC", "GT"] and merged.ids == ["a", "b"]
    assert merged.labels.tolist() == expected


def test_the_median_of_two_replicates_is_their_mean():
    ds = SequenceDataset.from_strings(["AC", "AC", "GT"], DNA, labels=[1.0, 2.0, 5.0])
    assert ds.merge_replicates("median")[0].labels.tolist() == [1.5, 5.0]


def test_merge_replicates_without_replicates_and_at_any_scale():
    ds = _ds()
    assert ds.merge_replicates() == (ds, 0)
    big = SequenceDataset.from_strings(["AC", "AC"], DNA, labels=[3e38, 3e38])
    assert big.merge_replicates()[0].labels.tolist() == [pytest.approx(3e38, rel=1e-6)]
    with pytest.raises(ValueError, match="how"):
        ds.merge_replicates("sum")


def test_labels_must_be_a_tensor_with_at_least_one_column():
    tokens = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"labels must be a float tensor .* got list"):
        SequenceDataset(tokens, DNA, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"labels must be \(N,\) or \(N, k\)"):
        SequenceDataset(tokens, DNA, torch.zeros(2, 0))


def test_integer_and_bool_labels_become_float_complex_ones_are_refused():
    tokens = torch.zeros(2, 3, dtype=torch.long)
    assert SequenceDataset(tokens, DNA, torch.tensor([1, 2])).labels.dtype == torch.float32
    assert SequenceDataset(tokens, DNA, torch.tensor([True, False])).labels.tolist() == [1.0, 0.0]
    assert SequenceDataset(tokens, DNA, torch.zeros(2, dtype=torch.float64)).labels.dtype == torch.float64
    with pytest.raises(ValueError, match=r"labels must be real numbers, got torch\.complex64"):
        SequenceDataset(tokens, DNA, torch.ones(2, dtype=torch.complex64))


def test_labels_are_stored_without_a_graph():
    y = torch.ones(2, requires_grad=True) * 2
    assert not SequenceDataset(torch.zeros(2, 3, dtype=torch.long), DNA, y).labels.requires_grad


def test_subset_takes_a_list_of_bools_as_a_mask_and_refuses_a_bare_index():
    sub = _ds().subset([True, False, True])
    assert sub.ids == ["a", "c"] and sub.labels.tolist() == [1.0, 3.0]
    assert len(_ds().subset([])) == 0
    with pytest.raises(ValueError, match=r"subset: a bool mask must have shape \(3,\), got \(2,\)"):
        _ds().subset([True, False])
    with pytest.raises(TypeError, match=r"one row: \[i\]"):
        _ds().subset(1)
    with pytest.raises(TypeError, match="subset: indices must be integers"):
        _ds().subset(torch.tensor([0.0, 2.0]))
