import math

import pytest
import torch

from mbo.config import SettingsError
from mbo.tasks import Ehrlich

TINY = dict(num_states=8, length=8, num_motifs=1, motif_length=2, quantization=2, corpus_size=300,
            offline_size=30)


def test_corpus_is_feasible_and_offline_is_low_scoring():
    task = Ehrlich(**TINY)
    corpus = task.pretrain_corpus()
    assert corpus.shape == (300, 8) and bool(task.is_feasible(corpus).all())
    off = task.offline_dataset()
    assert len(off) == 30 and len(set(off.ids)) == 30
    assert len(torch.unique(off.tokens, dim=0)) == 30
    assert bool((off.labels <= 0.5).all()) and bool(torch.isfinite(off.labels).all())
    assert torch.equal(off.labels, task.oracle(off.tokens))
    assert task.best_offline == float(off.labels.max())  # normalization is the identity


def test_oracle_marks_infeasible_with_minus_inf_and_optimum_is_one():
    task = Ehrlich(**TINY)
    assert task.oracle(task.optimal_solution()[None]).item() == 1.0
    banned = (task.function.transition_matrix == 0).nonzero()
    a, b = (int(v) for v in banned[0])
    x = task.pretrain_corpus()[:1].clone()
    x[0, 3], x[0, 4] = a, b
    assert not bool(task.is_feasible(x)[0])
    assert task.oracle(x).item() == -math.inf


def test_same_seed_same_task_and_bad_arguments():
    a, b = Ehrlich(**TINY), Ehrlich(**TINY)
    assert torch.equal(a.offline_dataset().tokens, b.offline_dataset().tokens)
    assert a.name == b.name and "seed0" in a.name
    with pytest.raises(SettingsError, match="offline_max_score"):
        Ehrlich(**{**TINY, "offline_max_score": -1.0}).offline_dataset()


@pytest.mark.parametrize("setting, problem", [
    ({"num_states": 65}, "num_states must be in"), ({"num_states": 1}, "num_states must be in"),
    ({"num_motifs": 0}, "num_motifs must be a positive integer"), ({"length": 0}, "length must be"),
    ({"motif_length": 1, "quantization": 1}, "motif_length must be >= 2"),
    ({"num_motifs": 3, "motif_length": 3}, "9 motif elements do not fit in task.length = 8"),
    ({"quantization": 0}, "quantization must be null or divide"),
    ({"length": 12, "motif_length": 4, "quantization": 3}, "quantization must be null or divide"),
    ({"corpus_size": 0}, "corpus_size must be a positive integer"),
    ({"num_states": 2, "seed": 2}, r"num_states must be in \[3, 64\]"),  # holo's chain is reducible there
    ({"seed": 1.5}, "seed must be an integer"), ({"seed": True}, "seed must be an integer"),
    ({"seed": 2**64 - 1}, "seed must be an integer of magnitude below"),
    ({"quantization": True}, "quantization must be null or divide"),
    ({"offline_max_score": None}, r"offline_max_score must be a number in \[0, 1\]"),
    ({"offline_max_score": -0.1}, "offline_max_score must be"), ({"offline_max_score": True}, "must be"),
])
def test_instances_holo_cannot_build_are_refused_by_name(setting, problem):
    with pytest.raises(SettingsError, match=problem):
        Ehrlich(**{**TINY, **setting})


def test_a_quantization_above_the_motif_length_is_named_as_built():
    assert Ehrlich(**{**TINY, "quantization": 5}).name == Ehrlich(**TINY).name  # q = motif_length = 2


def test_corpus_entropy_is_the_chains_entropy():
    task = Ehrlich(num_states=6, length=10, num_motifs=1, motif_length=3, quantization=3, seed=3)
    x = task.fresh_corpus(20000, torch.Generator().manual_seed(0))
    T = task.function.transition_matrix.double()
    pi = task.function.stationary_dist.double().reshape(-1)
    log_p = pi[x[:, 0]].log() + T[x[:, :-1], x[:, 1:]].log().sum(1)  # exact log-likelihood per draw
    mc = float(-log_p.mean()) / task.length
    se = float(log_p.std()) / task.length / 20000 ** 0.5
    assert abs(task.corpus_entropy() - mc) < 4 * se


def test_an_instance_with_too_few_sequences_for_its_offline_data_names_offline_size():
    task = Ehrlich(num_states=4, length=4, num_motifs=1, motif_length=2, quantization=2, corpus_size=50,
                   offline_size=300, offline_max_score=1.0)  # 4^4 = 256 sequences, fewer feasible
    problem = r"could not draw 300 distinct .* \(found \d+\); lower task.offline_size"
    with pytest.raises(SettingsError, match=problem):
        task.offline_dataset()
