import math
import warnings

import linear_operator.utils.cholesky as cholesky
import pytest
import torch
from linear_operator.utils.warnings import NumericalWarning

from mbo.active.oracle_baselines import (
    QueryBatch,
    _gp_training_set,
    _selection_loss,
    genetic_algorithm,
    gp_bo,
)
from mbo.tasks.ehrlich import Ehrlich

# L-BFGS fitting the GP on ~20 points with two distinct labels may stop "ABNORMAL"; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore::botorch.exceptions.warnings.OptimizationWarning")

ROUNDS, BATCH = 3, 6


@pytest.fixture(scope="module")
def task():
    return Ehrlich(num_states=8, length=8, num_motifs=1, motif_length=2, quantization=2,
                   corpus_size=200, offline_size=20)


class CountingOracle:
    def __init__(self, task):
        self.task, self.sizes = task, []

    def __call__(self, tokens):
        self.sizes.append(len(tokens))
        return self.task.oracle(tokens)


def _rows(tokens):
    return {tuple(r) for r in tokens.tolist()}


def _run(method, task, **kw):
    return method(task.oracle, task.offline_dataset(), rounds=ROUNDS, batch_size=BATCH, seed=0, **kw)


METHODS = [genetic_algorithm, gp_bo]


@pytest.mark.parametrize("method", METHODS)
def test_batches_are_the_oracles_answers(method, task):
    oracle = CountingOracle(task)
    batches = method(oracle, task.offline_dataset(), rounds=ROUNDS, batch_size=BATCH, seed=0)
    assert oracle.sizes == [BATCH] * ROUNDS  # every query counted, nothing else asked
    assert len(batches) == ROUNDS
    for b in batches:
        assert isinstance(b, QueryBatch)
        assert b.tokens.dtype == torch.long and b.tokens.shape == (BATCH, task.length)
        assert b.values.is_floating_point() and b.values.shape == (BATCH,)
        assert torch.equal(b.values, task.oracle(b.tokens))


@pytest.mark.parametrize("method", METHODS)
def test_seeded_and_leaves_global_rng_alone(method, task):
    state = torch.get_rng_state()
    first = _run(method, task)
    assert torch.equal(torch.get_rng_state(), state)
    second = _run(method, task)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.values, b.values)


@pytest.mark.parametrize("method", METHODS)
def test_never_requeries_a_measured_design(method, task):
    seen = _rows(task.offline_dataset().tokens)
    for b in _run(method, task):
        rows = _rows(b.tokens)
        assert len(rows) == BATCH and not rows & seen
        seen |= rows


def test_ga_best_so_far_never_below_initial(task):
    initial_best = task.offline_dataset().labels.max().item()
    best = initial_best
    for b in _run(genetic_algorithm, task):
        best = max(best, b.values.max().item())
        assert best >= initial_best


def test_ga_initial_smaller_than_population(task):
    small = task.offline_dataset().subset(slice(0, 3))
    batches = genetic_algorithm(task.oracle, small, rounds=2, batch_size=8, seed=1)
    assert [b.tokens.shape for b in batches] == [(8, task.length)] * 2


def test_gp_bo_stays_in_trust_region(task):
    # Round 1 searches Hamming balls of radius max_distance around the best initial designs.
    init = task.offline_dataset().tokens
    first = gp_bo(task.oracle, task.offline_dataset(), rounds=1, batch_size=BATCH, seed=0,
                  max_distance=1)[0]
    dist = (first.tokens.unsqueeze(1) != init).sum(-1).amin(-1)
    assert (dist == 1).all()


@pytest.mark.parametrize("method", METHODS)
def test_rejects_bad_arguments(method, task):
    data = task.offline_dataset()
    with pytest.raises(ValueError):
        method(task.oracle, data, rounds=-1, batch_size=BATCH)
    with pytest.raises(ValueError):
        method(task.oracle, data, rounds=1, batch_size=0)
    with pytest.raises(ValueError):
        method(task.oracle, data.subset(slice(0, 0)), rounds=1, batch_size=BATCH)


def test_genetic_algorithm_needs_two_survivors(task):
    # holo's DiscreteEvolution recombines two survivors; without them it failed deep inside holo.
    data = task.offline_dataset()
    with pytest.raises(ValueError, match=r"genetic_algorithm: survival_quantile \* batch_size must be >= 2"
                                         r".*batch_size=3: use batch_size >= 4"):
        genetic_algorithm(task.oracle, data, rounds=1, batch_size=3)
    with pytest.raises(ValueError, match=r"survival_quantile=0\.1, batch_size=6: use batch_size >= 20"):
        genetic_algorithm(task.oracle, data, rounds=1, batch_size=6, survival_quantile=0.1)
    with pytest.raises(ValueError, match=r"survival_quantile must lie in \(0, 1\), got 1\.0"):
        genetic_algorithm(task.oracle, data, rounds=1, batch_size=6, survival_quantile=1.0)


@pytest.mark.parametrize("method", METHODS)
def test_zero_rounds(method, task):
    assert method(task.oracle, task.offline_dataset(), rounds=0, batch_size=BATCH) == []


def test_infeasible_handling():
    values = torch.tensor([0.5, -math.inf, 0.25, -math.inf], dtype=torch.float64)
    # GP labels: -inf becomes the minimum finite value.
    _, y = _gp_training_set(torch.zeros(4, 3, dtype=torch.long), values, 10, 2, torch.Generator())
    assert y.tolist() == [0.5, 0.25, 0.25, 0.25]
    # GA selection: finite losses, infeasible strictly worse than every feasible design.
    loss = _selection_loss(values, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss).all()
    assert loss[1] > loss[2] > loss[0] and loss[3] > loss[2]


def test_gp_training_subset_keeps_the_best():
    values = torch.arange(10, dtype=torch.float64)
    tokens = torch.arange(10).unsqueeze(1)
    X, y = _gp_training_set(tokens, values, 5, 2, torch.Generator().manual_seed(0))
    assert len(y) == 5 and {9.0, 8.0} <= set(y.tolist())
    assert torch.equal(X.squeeze(1).double(), y)


def test_gp_bo_absorbs_jitter_warnings_and_nothing_else_does(task, monkeypatch):
    # Whether a Kriging-believer kernel matrix needs jitter depends on the CPU's rounding; simulate a
    # machine where every Cholesky needs it.
    original = cholesky._psd_safe_cholesky

    def needs_jitter(*args, **kwargs):
        warnings.warn("A not p.d., added jitter of 1.0e-08 to the diagonal", NumericalWarning, stacklevel=2)
        return original(*args, **kwargs)

    monkeypatch.setattr(cholesky, "_psd_safe_cholesky", needs_jitter)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches = _run(gp_bo, task)
        assert len(batches) == ROUNDS
        with pytest.raises(NumericalWarning):  # outside gp_bo the warning is still an error
            cholesky.psd_safe_cholesky(torch.eye(2, dtype=torch.float64))


def test_every_baseline_queries_only_designs_that_meet_the_constraints():
    from mbo.active.adalead import adalead
    from mbo.active.random_mutagenesis import random_mutagenesis
    from mbo.constraints import Constraints
    from mbo.data.alphabet import get_alphabet
    from mbo.data.dataset import SequenceDataset

    dna = get_alphabet("dna")
    rules = Constraints(dna, 8, fixed="TA......", forbidden_motifs=["AATT"], gc=(0.25, 0.5))
    g = torch.Generator().manual_seed(0)
    pool = rules.repair(torch.randint(4, (200, 8), generator=g), g)
    pool = torch.unique(pool[rules.satisfied(pool)], dim=0)[:12]
    weights = torch.tensor([0.0, 1.0, 2.0, 0.5])

    def oracle(x):  # rewards G and C, which the GC window caps
        return weights[x].sum(-1).double()

    start = SequenceDataset(pool, dna, labels=oracle(pool).float())
    runs = {"random": random_mutagenesis(oracle, start, rounds=2, batch_size=6, constraints=rules),
            "ga": genetic_algorithm(oracle, start, rounds=2, batch_size=6, constraints=rules,
                                    mutation_prob=0.5),
            "gp_bo": gp_bo(oracle, start, rounds=2, batch_size=3, raw_samples=32, constraints=rules),
            "adalead": adalead(oracle, start, rounds=2, batch_size=6, model_queries=60, constraints=rules)}
    for name, batches in runs.items():
        queried = torch.cat([b.tokens for b in batches])
        assert len(queried) >= 6, name
        assert bool(rules.satisfied(queried).all()), name
    # Unconstrained, the same GA proposes designs that break the rules: the repair is what keeps them out.
    free = torch.cat([b.tokens for b in genetic_algorithm(oracle, start, rounds=2, batch_size=6,
                                                          mutation_prob=0.5)])
    assert not bool(rules.satisfied(free).all())


def test_repair_walks_into_the_valid_set():
    from mbo.constraints import Constraints
    from mbo.data.alphabet import get_alphabet

    dna = get_alphabet("dna")
    rules = Constraints(dna, 10, fixed="G.........", forbidden_motifs=["GAATTC"], gc=(0.4, 0.6))
    g = torch.Generator().manual_seed(1)
    x = torch.randint(4, (300, 10), generator=g)
    fixed = rules.repair(x, g)
    assert bool(rules.satisfied(fixed).all())
    ok = rules.satisfied(x)
    assert bool((fixed[ok] == x[ok]).all())  # valid rows are left alone


@pytest.mark.parametrize("method", METHODS)
def test_an_oracle_that_answers_nan_is_refused(method, task):
    def nan_oracle(tokens):
        return torch.full((len(tokens),), math.nan)

    with pytest.raises(ValueError, match=r"oracle returned NaN for 6 of 6 designs; score infeasible"):
        method(nan_oracle, task.offline_dataset(), rounds=1, batch_size=BATCH, seed=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_starting_labels_that_are_nan_or_plus_inf_are_refused(method, task, bad):
    from mbo.data.dataset import SequenceDataset

    offline = task.offline_dataset()  # cached by the task: copied, not edited
    start = SequenceDataset(offline.tokens, offline.alphabet, labels=offline.labels.clone())
    # A dataset refuses them when built; a caller may still write them in after (-inf is the
    # infeasible mark, NaN and +inf are no measurement).
    start.labels[0] = bad
    with pytest.raises(ValueError, match=r"initial labels hold NaN or \+inf in 1 of \d+ entries"):
        method(lambda x: torch.zeros(len(x), dtype=torch.float64), start, rounds=1, batch_size=BATCH, seed=0)


@pytest.mark.parametrize("method", ["random", "adalead", "ga"])
def test_constrained_baselines_never_measure_a_design_twice(method):
    # The repair undoes a mutation of a conserved position: a mutant that only changed one is its
    # parent again. Checked for novelty before the repair, such mutants were measured twice (C20_L100,
    # random mutagenesis: 100 queries, 84 distinct, the start among them); the check must see the
    # repaired design.
    from mbo.active.adalead import adalead
    from mbo.active.random_mutagenesis import random_mutagenesis
    from mbo.constraints import Constraints
    from mbo.data.alphabet import get_alphabet
    from mbo.data.dataset import SequenceDataset
    from reward_models import DeepEnsemble

    rna = get_alphabet("rna")
    fixed = "ACGUACGUACGU...."  # 12 of 16 positions conserved: 3 of 4 mutations hit one
    rules = Constraints(rna, 16, fixed=fixed)
    start = rna.encode(fixed.replace(".", "A"))[None]

    def oracle(x):
        return x.double().sum(-1) / 16

    init = SequenceDataset(start, rna, labels=oracle(start).float())
    common = dict(rounds=3, batch_size=12, seed=0, constraints=rules)
    if method == "random":
        batches = random_mutagenesis(oracle, init, **common)
    elif method == "adalead":
        batches = adalead(oracle, init, model_queries=100, **common, make_model=lambda: DeepEnsemble(
            num_members=2, hidden_dims=(8,), epochs=5, device="cpu"))
    else:
        batches = genetic_algorithm(oracle, init, **common)
    queried = torch.cat([b.tokens for b in batches])
    assert [len(b.values) for b in batches] == [12, 12, 12]
    assert bool(rules.satisfied(queried).all())
    assert len(_rows(queried)) == 36 and tuple(start[0].tolist()) not in _rows(queried)
