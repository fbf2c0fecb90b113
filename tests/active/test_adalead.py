import math

import pytest
import torch

from mbo.active.adalead import adalead, recombine
from mbo.active.random_mutagenesis import mutate, novel_mutants, random_mutagenesis
from mbo.data.alphabet import DNA
from mbo.data.dataset import SequenceDataset
from reward_models import DeepEnsemble

L = 8
TARGET = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])


def matches(tokens: torch.Tensor) -> torch.Tensor:
    """Oracle: fraction of positions equal to TARGET; infeasible (-inf) when the last letter is T."""
    score = (tokens == TARGET).double().mean(1)
    return torch.where(tokens[:, -1] == 3, -math.inf, score)


def start() -> SequenceDataset:
    x = torch.tensor([[3, 3, 0, 0, 0, 0, 2, 2]])
    return SequenceDataset(x, DNA, labels=matches(x).float())


def tiny_model():
    return DeepEnsemble(num_members=2, hidden_dims=(16,), epochs=30, batch_size=32, device="cpu")


def keys(batches):
    return [tuple(r) for b in batches for r in b.tokens.tolist()]


def test_recombine_crosses_pairs_over():
    g = torch.Generator().manual_seed(0)
    a, b = torch.zeros(1, 20, dtype=torch.long), torch.ones(1, 20, dtype=torch.long)
    out = recombine(torch.cat([a, b]), 0.2, g)
    assert out.shape == (2, 20) and bool((out.sum(0) == 1).all())  # each position: one of each parent
    assert 0 < int(out[0].sum()) < 20  # some crossover happened at rate 0.2 over 20 positions
    same = recombine(torch.cat([a, b]), 0.0, g)  # no switch: the pair comes back whole
    assert sorted(same.sum(1).tolist()) == [0, 20]
    odd = recombine(torch.arange(3 * 4).reshape(3, 4), 0.5, g)
    assert odd.shape == (3, 4)  # an odd last parent is kept
    assert torch.equal(recombine(a, 0.5, g), a)


def test_mutation_helpers():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(500, L, dtype=torch.long)
    assert torch.equal(mutate(x, 0.0, 4, g), x)
    m = mutate(x, 1.0, 4, g)
    assert set(m.unique().tolist()) == {0, 1, 2, 3}
    seen = {x[0].numpy().tobytes()}
    kids, rows = novel_mutants(x[:50], 1 / L, 4, seen, g)
    assert len(kids) == len(rows) == 50 and len(torch.unique(kids, dim=0)) == 50
    assert not bool((kids == 0).all(1).any()) and len(seen) == 51


def test_adalead_spends_its_budget_on_new_designs_and_improves():
    init = start()
    batches = adalead(matches, init, rounds=3, batch_size=10, seed=0, model_queries=200,
                      eval_batch_size=5, make_model=tiny_model)
    assert [len(b.values) for b in batches] == [10, 10, 10]
    all_keys = keys(batches)
    assert len(set(all_keys)) == 30 and tuple(init.tokens[0].tolist()) not in all_keys
    for b in batches:
        assert b.values.tolist() == matches(b.tokens).tolist()
    best = max(float(b.values.max()) for b in batches)
    assert best > float(init.labels.max())
    again = adalead(matches, init, rounds=3, batch_size=10, seed=0, model_queries=200, eval_batch_size=5,
                    make_model=tiny_model)
    assert keys(again) == all_keys


def test_adalead_counts_model_queries():
    calls = []

    class Counting(DeepEnsemble):
        def mean_std(self, x, observation_noise=False):
            calls.append(len(x))
            return super().mean_std(x, observation_noise)

    adalead(matches, start(), rounds=2, batch_size=10, seed=1, model_queries=120, eval_batch_size=5,
            make_model=lambda: Counting(num_members=2, hidden_dims=(8,), epochs=5, device="cpu"))
    # Round 1 has one measurement (random scores, no model); round 2 spends at most its budget.
    assert 0 < sum(calls) <= 120


def test_random_mutagenesis_queries_new_neighbours():
    init = start()
    batches = random_mutagenesis(matches, init, rounds=4, batch_size=25, seed=2)
    assert [len(b.values) for b in batches] == [25] * 4 and len(set(keys(batches))) == 100
    first = batches[0].tokens
    assert int((first != init.tokens).sum(1).min()) >= 1  # mutants of the one measured start
    assert keys(random_mutagenesis(matches, init, rounds=4, batch_size=25, seed=2)) == keys(batches)


def test_bad_arguments():
    with pytest.raises(ValueError, match="model_queries"):
        adalead(matches, start(), rounds=1, batch_size=10, model_queries=5)
    with pytest.raises(ValueError, match="threshold"):
        adalead(matches, start(), rounds=1, batch_size=10, threshold=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        random_mutagenesis(matches, start(), rounds=1, batch_size=0)


def test_adalead_runs_when_every_measured_label_is_equal():
    # Identical starts or a flat landscape give labels the reward models refuse to fit ("nothing to
    # learn"); like a single measurement, this is a round with no informative model, not a crash.
    x = torch.tensor([[3, 3, 0, 0, 0, 0, 2, 2]] * 3)
    init = SequenceDataset(x, DNA, labels=torch.full((3,), 0.25))

    def flat(tokens):
        return torch.zeros(len(tokens), dtype=torch.float64)

    batches = adalead(flat, init, rounds=2, batch_size=10, seed=0, model_queries=100, eval_batch_size=5,
                      make_model=tiny_model)
    assert [len(b.values) for b in batches] == [10, 10] and len(set(keys(batches))) == 20


def test_adalead_ranks_nan_predictions_last():
    # torch sorts NaN above every number, so a model that answers NaN for some designs would have
    # them proposed first; NaN carries no information and must rank last.
    from mbo.active.adalead import _propose

    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, (2, 30), generator=g)
    values = torch.tensor([0.5, 0.4], dtype=torch.float64)

    def predict(x):  # NaN for designs with a 3 at position 0, else a finite score
        return torch.where(x[:, 0] == 3, torch.nan, x.double().mean(1))

    out = _propose(predict, tokens, values, batch_size=10, vocab_size=4, rate=1 / 30, model_queries=400,
                   threshold=1.0, recomb_rate=0.2, rho=1, eval_batch_size=5, gen=g)
    assert len(out) == 10 and not bool((out[:, 0] == 3).any())
