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


def test_unique_designs_without_hits_keeps_the_length():
    found, drawn = unique_designs(lambda k: torch.zeros(k, 3, dtype=torch.long), 2,
                                  exclude=torch.zeros(1, 3, dtype=torch.long), max_draws=2)
    assert found.shape == (0, 3) and found.dtype == torch.long and drawn == 4


def test_ranked_puts_minus_inf_last_and_refuses_nan_or_a_wrong_length():
    designs = torch.tensor([[0], [1], [2]])
    x, s = ranked(designs, torch.tensor([float("-inf"), 1.0, 2.0]))
    assert x.tolist() == [[2], [1], [0]] and s.tolist() == [2.0, 1.0, float("-inf")]
    with pytest.raises(ValueError, match="score is NaN for 1 of 3"):
        ranked(designs, torch.tensor([1.0, float("nan"), 2.0]))
    with pytest.raises(ValueError, match=r"score must be \(3,\).*got \(2,\)"):
        ranked(designs, torch.tensor([1.0, 2.0]))


def test_unique_designs_stops_once_draws_add_nothing_new():
    calls = []

    def collapsed(k: int) -> torch.Tensor:
        calls.append(k)
        return torch.zeros(k, 2, dtype=torch.long)

    found, drawn = unique_designs(collapsed, 4, max_draws=50, patience=3)
    assert found.tolist() == [[0, 0]] and len(calls) == 4 and drawn == 16


def test_unique_designs_keeps_drawing_through_draws_the_constraints_refuse_whole():
    batches = iter([torch.tensor([[1, 1]])] * 5 + [torch.tensor([[2, 2]])])
    found, drawn = unique_designs(lambda k: next(batches), 1, accept=lambda x: x[:, 0] == 2,
                                  max_draws=10, patience=2)
    assert found.tolist() == [[2, 2]] and drawn == 6
