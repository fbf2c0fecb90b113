"""Several objectives: Pareto front, hypervolume, and plates that grow the front."""

import pytest
import torch

from mbo.active.pareto import PARETO_METHODS, hypervolume, pareto_mask, select_pareto_batch


class Additive:
    """A fake ensemble: member k predicts sum_i W_k[i, x_i] (members differ by a fixed offset)."""

    def __init__(self, weights, offsets=(0.0, 0.1, -0.1)):
        self.weights, self.offsets = weights, offsets

    def member_predictions(self, x):  # (N, L, V) -> (K, N)
        base = (x * self.weights).sum((-1, -2))
        return torch.stack([base + o for o in self.offsets])


def test_front_and_hypervolume_of_known_points():
    y = torch.tensor([[1.0, 2.0], [2.0, 1.0], [1.0, 1.0], [0.5, 3.0], [-1.0, 5.0]])
    assert pareto_mask(y).tolist() == [True, True, False, True, True]
    assert pareto_mask(y[[0, 0, 2]]).tolist() == [True, True, False]  # a tie on the front: both on it
    # Above ref (0, 0): the union of [0,1]x[0,2], [0,2]x[0,1], [0,0.5]x[0,3]; (-1, 5) adds nothing.
    assert hypervolume(y, torch.zeros(2)) == pytest.approx(3.5)
    assert hypervolume(y[:0], torch.zeros(2)) == 0.0


def pool_and_models():
    # L = 2, V = 3: objective 1 rewards token 2 at position 0, objective 2 token 2 at position 1, and
    # token 1 is a compromise at each; all 9 sequences are in the pool, one is measured.
    w1 = torch.tensor([[0.0, 0.6, 1.0], [0.0, 0.0, 0.0]])
    w2 = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.6, 1.0]])
    pool = torch.cartesian_prod(torch.arange(3), torch.arange(3))
    return [Additive(w1), Additive(w2)], pool, torch.tensor([[0, 0]])


@pytest.mark.parametrize("method", PARETO_METHODS)
def test_plates_are_distinct_new_and_sized(method):
    models, pool, baseline = pool_and_models()
    sel = select_pareto_batch(models, pool, 5, vocab_size=3, ref_point=torch.tensor([-0.5, -0.5]),
                              baseline=baseline, method=method, exclude=baseline, seed=0)
    rows = [tuple(r) for r in sel.tokens.tolist()]
    assert len(rows) == 5 == len(set(rows)) and (0, 0) not in rows
    assert sel.mean.shape == (5, 2) and sel.std.shape == (5, 2) and sel.pool_size == 8


def test_qnehvi_picks_the_front_then_fills_the_plate_along_the_predicted_front():
    # Predicted values: (2, 2) -> (1, 1) dominates everything; once it is picked no candidate grows the
    # plate's front in any member, so the joint value is 0 for all and the rest of the plate is picked
    # by random Chebyshev scalarizations of the predicted means: each such pick is on the predicted
    # front of what is left (never, say, (1, 1) -> (0.6, 0.6) while (2, 1) -> (1, 0.6) is available).
    models, pool, baseline = pool_and_models()
    ref = torch.tensor([-0.5, -0.5])
    hot = torch.nn.functional.one_hot(pool, 3).float()
    predicted = dict(zip(map(tuple, pool.tolist()),
                         torch.stack([m.member_predictions(hot).mean(0) for m in models], -1), strict=True))
    for seed in range(4):
        sel = select_pareto_batch(models, pool, 5, vocab_size=3, ref_point=ref, baseline=baseline,
                                  method="qnehvi", exclude=baseline, seed=seed)
        assert tuple(sel.tokens[0].tolist()) == (2, 2) and sel.acquisition[0] > 0
        left = [r for r in predicted if r not in {(0, 0), (2, 2)}]
        for row in map(tuple, sel.tokens[1:].tolist()):
            on_front = pareto_mask(torch.stack([predicted[r] for r in left]))
            assert bool(on_front[left.index(row)]), (seed, row)
            left.remove(row)


def test_bad_arguments_are_refused():
    models, pool, baseline = pool_and_models()
    with pytest.raises(ValueError, match="unknown method"):
        select_pareto_batch(models, pool, 2, vocab_size=3, ref_point=torch.zeros(2), baseline=baseline,
                            method="nsga")
    with pytest.raises(ValueError, match="at least 2 models"):
        select_pareto_batch(models[:1], pool, 2, vocab_size=3, ref_point=torch.zeros(1), baseline=baseline)
    with pytest.raises(ValueError, match="already measured"):
        select_pareto_batch(models, pool, 2, vocab_size=3, ref_point=torch.zeros(2), baseline=baseline,
                            exclude=pool)


def test_ref_point_may_be_a_list_and_must_have_one_finite_value_per_model():
    models, pool, baseline = pool_and_models()
    kw = dict(vocab_size=3, baseline=baseline, exclude=baseline, seed=0)
    as_list = select_pareto_batch(models, pool, 3, ref_point=[-0.5, -0.5], **kw)
    as_tensor = select_pareto_batch(models, pool, 3, ref_point=torch.tensor([-0.5, -0.5]), **kw)
    assert torch.equal(as_list.tokens, as_tensor.tokens)
    for bad in (torch.zeros(3), [0.0, float("nan")]):
        with pytest.raises(ValueError, match="ref_point must be 2 finite numbers, one per model"):
            select_pareto_batch(models, pool, 3, ref_point=bad, **kw)
    with pytest.raises(TypeError, match="select_pareto_batch: pool: expected integer tokens"):
        select_pareto_batch(models, pool.float(), 3, ref_point=[-0.5, -0.5], **kw)
