import pytest
import torch

from mbo.designs import design_ids, ranked, unique_designs


def test_unique_designs_skips_repeats_and_excluded_rows():
    batches = iter([torch.tensor([[0, 0], [0, 0], [1, 1]]), torch.tensor([[2, 2], [1, 1], [3, 3]])])
    found, drawn = unique_designs(lambda k: next(batches), 3, exclude=torch.tensor([[2, 2]]))
    assert found.tolist() == [[0, 0], [1, 1], [3, 3]] and drawn == 6


def test_unique_designs_gives_up_after_max_draws():
    found, drawn = unique_designs(lambda k: torch.zeros(k, 2, dtype=torch.long), 4, max_draws=3)
    assert found.tolist() == [[0, 0]] and drawn == 12
    with pytest.raises(ValueError):
        unique_designs(lambda k: torch.zeros(k, 2, dtype=torch.long), 0)


def test_ranked_and_ids():
    x, s = ranked(torch.tensor([[0], [1], [2]]), torch.tensor([0.5, 2.0, 0.5]))
    assert x.tolist() == [[1], [0], [2]] and s.tolist() == [2.0, 0.5, 0.5]
    assert design_ids(3) == ["design_0001", "design_0002", "design_0003"]
    assert design_ids(12000)[-1] == "design_12000"
