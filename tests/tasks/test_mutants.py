import pytest
import torch

from mbo.tasks.mutants import random_mutants


def test_mutants_change_between_min_and_max_positions():
    start = torch.zeros(1, 12, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    exact = random_mutants(start, 200, 3, 4, gen, min_mutations=3)
    assert ((exact != start).sum(1) == 3).all()
    spread = (random_mutants(start, 400, 3, 4, gen) != start).sum(1)
    assert set(spread.tolist()) == {1, 2, 3}
    frozen = torch.zeros(12, dtype=torch.bool)
    frozen[2:] = True  # two mutable positions cap an exact count of 3 at 2
    capped = random_mutants(start, 50, 3, 4, gen, frozen=frozen, min_mutations=3)
    assert ((capped != start).sum(1) == 2).all() and (capped[:, 2:] == 0).all()
    with pytest.raises(ValueError, match="min_mutations <= max_mutations"):
        random_mutants(start, 5, 2, 4, gen, min_mutations=3)
