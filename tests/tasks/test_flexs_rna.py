import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import RNA as vienna
import torch

from mbo.constraints import constraints_from_settings
from mbo.data.alphabet import RNA
from mbo.tasks import RNABinding
from mbo.tasks.flexs_rna import load_data, reverse_complement, rna_problems

# Fitness of the 5 published starts under the wheel's own RNABinding code (its source run against a
# stub base class, ViennaRNA 2.8.0; see mbo/tasks/data/README.md): the task must give exactly these.
WHEEL_STARTS = {
    "L14_RNA1": [0.5437469105289173, 0.650848574724007, 0.28011204481792706, 0.14554841544460917,
                 0.43115285329818187],
    "L14_RNA1+2": [0.6841138231097099, 0.6412109793973082, 0.27879076158765387, 0.15601505122951878,
                   0.434909442874449],
}
SMALL = dict(corpus_size=200)


def test_registry_mirrors_the_wheel():
    problems = rna_problems()
    assert len(problems) == 36  # 4 targets x 3 lengths + 6 pairs x 3 lengths + 6 conserved
    p = problems["C20_L100_RNA1+3"]
    assert (p.targets, p.length, p.conserved_start, p.conserved_pattern) == \
        ((1, 3), 100, 21, "GCCCGGCCCAUGUGAGCAUG")
    data = load_data()
    assert data.starts[14][0] == "AUGGGCCGGACCCC" and len(data.targets) == 4
    assert all(len(t) == 100 for t in data.targets)
    with pytest.raises(ValueError, match="unknown FLEXS RNA problem"):
        RNABinding("L15_RNA1")


@pytest.mark.parametrize("problem", sorted(WHEEL_STARTS))
def test_starts_score_as_the_wheel_and_by_hand(problem):
    task = RNABinding(problem, **SMALL)
    off = task.offline_dataset()
    assert off.ids == [f"start_{k}" for k in range(1, 6)] and off.labels.dtype == torch.float64
    assert off.labels.tolist() == WHEEL_STARTS[problem]
    # By hand: mean over targets of duplexfold(target, design) / (duplexfold(revcomp, target) * L / 100).
    seqs = RNA.decode(off.tokens)
    for seq, value in zip(seqs, off.labels.tolist(), strict=True):
        ratios = [vienna.duplexfold(t, seq).energy / (vienna.duplexfold(reverse_complement(t), t).energy
                                                      * 14 / 100) for t in task.targets]
        assert value == pytest.approx(sum(ratios) / len(ratios), rel=1e-12)
    assert task.label_range() == (0.0, 1.0)


@pytest.mark.parametrize("problem,best", [("L14_RNA1", 1.0545394628439608),
                                          ("L14_RNA1+2", 1.034642491846905)])
def test_complement_designs_are_local_maxima(problem, best):
    # FLEXS publishes no peaks; the reverse complements of the target windows are its construction of
    # the optimum, and the best of them admit no improving single mutation.
    task = RNABinding(problem, **SMALL)
    peaks = task.complement_designs(3)
    assert RNA.decode(peaks[0]) == "GGGGGCCCCGCGCG" and task.oracle(peaks[:1]).item() == best
    for peak in peaks:
        mutants = peak.repeat(14 * 3, 1)
        for i, (pos, shift) in enumerate((p, s) for p in range(14) for s in (1, 2, 3)):
            mutants[i, pos] = (peak[pos] + shift) % 4
        assert bool((task.oracle(mutants) <= task.oracle(peak[None])).all())


def test_conserved_region_is_a_constraint():
    task = RNABinding("C20_L100_RNA1+3", **SMALL)
    starts = task.starting_sequences()
    assert task.is_feasible(starts).tolist() == [True, True, True, False, False]
    off = task.offline_dataset()
    assert off.ids == ["start_1", "start_2", "start_3"]
    assert off.labels.tolist() == [0.46595072966798123, 0.29500846684484844, 0.255783240212306]
    broken = off.tokens[:1].clone()
    broken[0, 30] = (broken[0, 30] + 1) % 4
    assert task.oracle(torch.cat([broken, starts[3:]])).tolist() == [-math.inf] * 3
    mask = task.conserved_mask()
    assert mask.nonzero().squeeze(-1).tolist() == list(range(21, 41))
    corpus = task.pretrain_corpus()
    assert bool(task.is_feasible(corpus).all())
    # As constraints, the required letters are exactly the region: all feasible designs keep them.
    c = constraints_from_settings(None, RNA, 100, required=task.required_letters())
    assert c.satisfied(torch.cat([off.tokens, broken])).tolist() == [True] * 3 + [False]
    assert RNABinding("L14_RNA1", **SMALL).required_letters() == {}


def test_corpus_is_distinct_nearby_mutants_without_oracle_calls(monkeypatch):
    task = RNABinding("L14_RNA1", corpus_size=300, corpus_mutation_fraction=0.2, seed=3)
    starts = task.offline_dataset().tokens
    monkeypatch.setattr(task, "oracle", lambda tokens: pytest.fail("the corpus must not call the oracle"))
    corpus = task.pretrain_corpus()
    assert corpus.shape == (300, 14) and len(torch.unique(corpus, dim=0)) == 300
    dist = (corpus.unsqueeze(1) != starts.unsqueeze(0)).sum(-1).amin(1)
    assert int(dist.min()) >= 1 and int(dist.max()) <= task.max_mutations == 3
    again = RNABinding("L14_RNA1", corpus_size=300, seed=3)
    again._offline = task._offline  # same starts, no second scoring
    assert torch.equal(again.pretrain_corpus(), corpus)


def test_parallel_split_scores_like_the_serial_path():
    # The round-robin split and reassembly, run on threads (the same map API, none of a process
    # pool's start-up cost); the real spawn pool is the slow test below.
    serial = RNABinding("L14_RNA1+2", **SMALL)
    split = RNABinding("L14_RNA1+2", **SMALL, workers=3, parallel_min=1)
    x = torch.randint(4, (10, 14), generator=torch.Generator().manual_seed(0))
    with ThreadPoolExecutor(3) as pool:
        split._pool = pool
        assert torch.equal(split.oracle(x), serial.oracle(x))
        split._pool = None
    assert np.all(serial.norm_values < 0)


@pytest.mark.slow
def test_process_pool_scores_like_the_serial_path():
    serial = RNABinding("L14_RNA1+2", **SMALL)
    pooled = RNABinding("L14_RNA1+2", **SMALL, workers=2, parallel_min=1)
    x = torch.randint(4, (9, 14), generator=torch.Generator().manual_seed(0))
    try:
        assert torch.equal(pooled.oracle(x), serial.oracle(x))
    finally:
        pooled.close()


def test_bad_tokens_and_arguments():
    task = RNABinding("L14_RNA1", **SMALL)
    with pytest.raises(ValueError, match="shape"):
        task.oracle(torch.zeros(2, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="corpus_mutation_fraction"):
        RNABinding("L14_RNA1", corpus_mutation_fraction=0.0)
    with pytest.raises(ValueError, match="workers"):
        RNABinding("L14_RNA1", workers=0)
