"""Choosing c and alpha from the offline data: the probe's split and the choice among candidates."""

import functools
import math
import types

import pytest
import torch

from conservative import OptimisticReward, choose_c_alpha, probe_rows
from mbo.config import SettingsError
from mbo.data.alphabet import DNA
from mbo.data.dataset import SequenceDataset
from reward_models import DeepEnsemble

PRETRAINED = types.SimpleNamespace(device=torch.device("cpu"), vocab_size=4)


def tiny_data(n=12):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, (n, 4), generator=g)
    return SequenceDataset(tokens, DNA, (tokens == 2).float().sum(1) + 0.1 * torch.randn(n, generator=g))


def random_designs(pretrained, reward, n, *, alpha, generator):
    return types.SimpleNamespace(designs=torch.randint(4, (n, 4), generator=generator))


def make_model():
    return DeepEnsemble(num_members=2, hidden_dims=(8,), epochs=1, batch_size=16)


@pytest.mark.parametrize("holdout", [0, 1, 1.5, -0.1, float("nan"), "0.2", True])
def test_a_holdout_outside_zero_one_is_refused(holdout):
    # 1.5 raised torch.quantile's RuntimeError (a traceback from mbo-run); 0 held nothing out.
    with pytest.raises(SettingsError, match=r"^auto\.holdout .* must lie in \(0, 1\), got"):
        probe_rows(torch.arange(5.0), holdout)
    assert probe_rows(torch.arange(3.0), 0.2).tolist() == [True, True, False]


def test_ties_go_to_the_smallest_c_and_largest_alpha():
    d = tiny_data()
    judge = make_model().fit(d)
    # Every candidate draws the same designs (the same seed, a method that ignores the reward).
    c, alpha, report = choose_c_alpha(PRETRAINED, d, make_model, judge, random_designs, [3, 0, 1],
                                      [0.03, 0.1], n=8)
    assert (c, alpha) == (0.0, 0.1) and len(report) == 6


def test_a_judge_that_scores_nan_is_refused_not_read_as_a_choice_off_the_grid():
    class NanJudge:
        def mean_std(self, x):
            return torch.full((x.shape[0],), float("nan")), torch.ones(x.shape[0])

    # Every comparison with NaN was False: (c, alpha) = (0, 0) came back, though neither was a candidate.
    with pytest.raises(ValueError, match=r"judge scores the designs of c=3,alpha=0\.1 NaN"):
        choose_c_alpha(PRETRAINED, tiny_data(), make_model, NanJudge(), random_designs, [3], [0.1], n=4)


def test_a_candidate_whose_designs_are_all_offline_copies_ranks_last():
    d = tiny_data()

    def copies_unless_pessimistic(pretrained, reward, n, *, alpha, generator):
        # c = 0 copies the offline rows; c = 3 draws one new design.
        if reward.reward.c == 0:
            return types.SimpleNamespace(designs=d.tokens[:n])
        return types.SimpleNamespace(designs=torch.tensor([[2, 2, 2, 2]] * n))

    judge = make_model().fit(d)
    c, alpha, report = choose_c_alpha(PRETRAINED, d, make_model, judge, copies_unless_pessimistic, [0, 3],
                                      [0.1], n=8, exclude=d.tokens)
    # The copies were judged as if they were designs, and c = 0 won with nothing new to show.
    assert (c, alpha) == (3.0, 0.1)
    assert report["c=0,alpha=0.1"]["designs"] == 0 and report["c=0,alpha=0.1"]["judged_median"] == -math.inf


def test_the_probe_weighs_c_on_the_runs_own_conservative_reward():
    d = tiny_data()
    seen = []

    def records_the_reward(pretrained, reward, n, *, alpha, generator):
        seen.append((type(reward.reward).__name__, reward.reward.penalty, reward.reward.c))
        return random_designs(pretrained, reward, n, alpha=alpha, generator=generator)

    # With the default std penalty in its place, a chosen c would weigh another ĝ than the run's.
    choose_c_alpha(PRETRAINED, d, make_model, make_model().fit(d), records_the_reward, [0, 2], [0.1], n=4,
                   conservative=functools.partial(OptimisticReward, penalty="min"))
    assert seen == [("OptimisticReward", "min", 0.0), ("OptimisticReward", "min", 2.0)]
