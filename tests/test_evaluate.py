import math

import pytest
import torch

from mbo.data import DNA, SequenceDataset
from mbo.evaluate import evaluate_designs, hamming_to_nearest, mean_pairwise_hamming, percentiles
from mbo.tasks import Task


class CountA(Task):
    """Score = fraction of A; sequences starting with T are infeasible."""

    name, alphabet, length, has_oracle = "count-a", DNA, 3, True

    def pretrain_corpus(self):
        return self.offline_dataset().tokens

    def offline_dataset(self):
        return SequenceDataset.from_strings(["CCC", "ACC", "GGA"], DNA, [0.0, 1 / 3, 1 / 3])

    def oracle(self, tokens):
        score = (tokens == 0).float().mean(1)
        return torch.where(tokens[:, 0] == 3, -math.inf, score)


def tok(*seqs):
    return DNA.encode_batch(list(seqs))


def test_hamming_helpers():
    designs, ref = tok("AAA", "CCG"), tok("CCC", "AAT")
    assert hamming_to_nearest(designs, ref, 4, chunk=1).tolist() == [1, 1]
    assert mean_pairwise_hamming(tok("AAA", "AAC", "CCC")) == pytest.approx((1 + 3 + 2) / 3)
    assert mean_pairwise_hamming(tok("AAA")) == 0.0


def test_infeasible_designs_count_as_worst():
    assert percentiles(torch.tensor([0.5, -math.inf, math.nan, 1.0])) == {"p100": 1.0, "p50": -math.inf}


def test_evaluate_designs_metrics():
    class Const(torch.nn.Module):
        def mean_std(self, x):
            return torch.full((x.shape[0],), 0.9), torch.full((x.shape[0],), 0.1)

    task = CountA()
    out = evaluate_designs(tok("AAA", "ACC", "TAA", "ACC"), task=task, reward_model=Const(),
                           reward=lambda x: x[..., 0].sum(-1), offline=task.offline_dataset())
    assert out["true_p100"] == 1.0 and out["feasible"] == 0.75
    assert out["true_mean"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert out["overopt_gap"] == pytest.approx(0.9 - out["true_mean"])
    assert out["frac_in_offline"] == 0.5 and out["unique"] == 3
    assert out["reward_mean"] == pytest.approx((3 + 1 + 2 + 1) / 4)
    assert out["pred_std"] == pytest.approx(0.1)


def test_naturalness_of_the_same_designs_is_the_same_in_every_row():
    from tests.guidance import tiny_model

    model = tiny_model(vocab=4, length=3)
    designs = torch.randint(0, 4, (6, 3), generator=torch.Generator().manual_seed(1))
    task = CountA()
    first = evaluate_designs(designs, offline=task.offline_dataset(), diffusion=model)["naturalness"]
    torch.rand(5)  # whatever the global stream did in between
    assert evaluate_designs(designs, offline=task.offline_dataset(), diffusion=model)["naturalness"] == first


def test_mean_pairwise_hamming_counts_every_pair_without_the_pairwise_tensor():
    x = torch.randint(0, 20, (57, 13), generator=torch.Generator().manual_seed(0))
    brute = (x[:, None] != x[None]).sum(-1).double().sum() / (57 * 56)
    assert mean_pairwise_hamming(x) == pytest.approx(brute.item(), rel=1e-12)
    assert mean_pairwise_hamming(x[:1]) == 0.0


def test_empty_inputs_are_refused_by_name():
    x = torch.zeros(3, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="percentiles: no scores"):
        percentiles(torch.tensor([]))
    with pytest.raises(ValueError, match="reference has no rows"):
        hamming_to_nearest(x, x[:0], 4)
    with pytest.raises(ValueError, match="evaluate_designs: no designs"):
        evaluate_designs(x[:0], offline=SequenceDataset(x, DNA, torch.zeros(3)))


def test_evaluate_designs_without_task_or_offline_data_needs_no_alphabet():
    # Every input is optional: naturalness, diversity and uniqueness need no alphabet, so they must not
    # fail for want of one (they raised AttributeError on offline=None); a reward does need it, by name.
    from tests.guidance import tiny_model

    designs = torch.randint(0, 4, (6, 3), generator=torch.Generator().manual_seed(2))
    model = tiny_model(vocab=4, length=3)
    out = evaluate_designs(designs, diffusion=model)
    assert set(out) == {"n", "unique", "diversity", "naturalness"} and math.isfinite(out["naturalness"])
    assert out["naturalness"] == evaluate_designs(designs, offline=CountA().offline_dataset(),
                                                  diffusion=model)["naturalness"]
    assert evaluate_designs(designs)["diversity"] == mean_pairwise_hamming(designs)
    with pytest.raises(ValueError, match="need a task or offline data"):
        evaluate_designs(designs, reward=lambda x: x.sum((1, 2)))


def test_novelty_is_the_brute_force_nearest_offline_hamming_in_any_chunking():
    # Novelty is the README's headline distance: check it against the (N, M, L) comparison, with chunks
    # that split the offline set unevenly and with designs that are offline rows (distance 0).
    gen = torch.Generator().manual_seed(3)
    offline = torch.randint(0, 4, (1000, 10), generator=gen)
    designs = torch.randint(0, 4, (40, 10), generator=gen)
    designs[:7] = offline[-7:]  # in the last chunk
    brute = (designs[:, None] != offline[None]).sum(-1).min(1).values
    for chunk in (1, 333, 8192):
        assert hamming_to_nearest(designs, offline, 4, chunk=chunk).long().tolist() == brute.tolist()
    out = evaluate_designs(designs, offline=SequenceDataset(offline, DNA, torch.zeros(1000)))
    assert out["novelty"] == pytest.approx(brute.double().mean().item(), rel=1e-6)
    assert out["frac_in_offline"] == (brute == 0).double().mean().item() >= 7 / 40


def test_no_feasible_design_gives_minus_inf_scores_and_no_gap():
    class Const(torch.nn.Module):
        def mean_std(self, x):
            return torch.ones(x.shape[0]), torch.zeros(x.shape[0])

    out = evaluate_designs(tok("TAA", "TCC"), task=CountA(), reward_model=Const())
    assert out["true_p100"] == out["true_p50"] == out["true_mean"] == -math.inf and out["feasible"] == 0.0
    assert "overopt_gap" not in out  # a gap to no feasible design is undefined, not −inf
