"""Tiny synthetic data shared by the reward-model tests (no task data needed)."""

import pytest
import torch

from mbo.data.alphabet import DNA, one_hot
from mbo.data.dataset import SequenceDataset

L, V = 5, 4


def make_dataset(n: int = 48, seed: int = 0) -> SequenceDataset:
    """Label = number of 'G' plus a little noise: learnable, with ties like TFBind8."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(V, (n, L), generator=gen)
    labels = (tokens == 2).float().sum(1) + 0.1 * torch.randn(n, generator=gen)
    return SequenceDataset(tokens, DNA, labels)


@pytest.fixture
def dataset() -> SequenceDataset:
    return make_dataset()


@pytest.fixture
def soft_onehot() -> torch.Tensor:
    """Soft one-hot (6, L, V) that requires grad."""
    gen = torch.Generator().manual_seed(1)
    return torch.softmax(torch.randn(6, L, V, generator=gen), dim=-1).requires_grad_()


@pytest.fixture
def choices() -> torch.Tensor:
    """Flattened hard one-hot candidates (20, L*V)."""
    gen = torch.Generator().manual_seed(2)
    return one_hot(torch.randint(V, (20, L), generator=gen), V).flatten(1)
