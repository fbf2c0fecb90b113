"""select_batch's argument checks (its behaviour on a fitted ensemble: tests/active/test_seiko.py)."""

import pytest
import torch

from mbo.active.selection import select_batch


class Additive:
    """A fake 3-member ensemble: member k predicts sum_i W[i, x_i] + offset_k."""

    def __init__(self, weights):
        self.weights = weights

    def member_predictions(self, x):  # (N, L, V) -> (K, N)
        base = (x * self.weights).sum((-1, -2))
        return torch.stack([base, base + 0.1, base - 0.1])

    def mean_std(self, x):
        members = self.member_predictions(x)
        return members.mean(0), members.std(0)


MODEL = Additive(torch.arange(12.0).view(3, 4))
POOL = torch.cartesian_prod(torch.arange(4), torch.arange(4), torch.arange(4))


def test_the_pool_must_be_integer_tokens_below_vocab_size():
    assert select_batch(MODEL, POOL.int(), 2, vocab_size=4).tokens.dtype == torch.long
    with pytest.raises(TypeError, match="select_batch: pool: expected integer tokens"):
        select_batch(MODEL, POOL.float(), 2, vocab_size=4)
    with pytest.raises(ValueError, match=r"select_batch: pool: tokens must lie in 0\.\.3"):
        select_batch(MODEL, POOL + 1, 2, vocab_size=4)


@pytest.mark.parametrize("beta", [-1.0, float("nan"), float("inf"), True])
def test_beta_must_be_a_finite_number_at_least_zero(beta):
    with pytest.raises(ValueError, match="select_batch: beta must be a finite number >= 0"):
        select_batch(MODEL, POOL, 2, vocab_size=4, beta=beta)
