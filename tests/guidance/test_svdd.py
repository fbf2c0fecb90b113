"""SVDD-PM, SVDD-RO and SVDD-MC: selection, budgets, reproducibility, and that they beat the prior."""

import pytest
import torch

from mbo.guidance import rollout, select_candidates, svdd_mc, svdd_pm, svdd_rollout
from mbo.guidance.base import x0_log_probs
from mbo.guidance.svdd import selection_starts
from tests.guidance import L, count_zero, gen, plain_mean, rewards_of, tiny_model

MC = dict(rollouts=256, value_steps=150, value_batch_size=64, value_lr=3e-3, value_dim=16, value_depth=1)


def test_select_candidates_argmax_at_zero_and_softmax_above():
    v = torch.tensor([[0.0, 2.0, 1.0], [5.0, 5.0, -1.0]])
    assert select_candidates(v, 0.0).tolist() == [1, 0]
    assert select_candidates(v, 1e-6, gen()).tolist()[0] == 1
    draws = select_candidates(v[:1].expand(30000, -1), 1.0, gen())
    freq = torch.bincount(draws, minlength=3).float() / 30000
    assert torch.allclose(freq, torch.softmax(v[0], -1), atol=0.01)


@pytest.mark.parametrize("alpha", [0.0, 1e-6])
def test_vanishing_alpha_keeps_the_best_candidate(alpha):
    # L = 1: one step, each candidate a clean design; token 1 (prior mass ~0.3) is the best, and
    # among 50 candidates it is present for every design (miss probability 0.7^50).
    model = tiny_model(sampler="first_hitting", length=1)
    reward = lambda x: x[..., 1].sum(-1)  # noqa: E731
    res = svdd_pm(model, reward, 20, candidates=50, alpha=alpha, generator=gen())
    assert res.designs.flatten().tolist() == [1] * 20
    hot = svdd_pm(model, reward, 400, candidates=50, alpha=1e4, generator=gen())
    assert 0.1 < (hot.designs == 1).float().mean() < 0.6  # a high temperature keeps the prior


@pytest.mark.parametrize("sampler", ["first_hitting", 12])
def test_pm_budget_and_exact_rewards(sampler):
    model = tiny_model(sampler=sampler)
    n, m = 5, 3
    res = svdd_pm(model, count_zero, n, candidates=m, alpha=0.0, generator=gen())
    assert torch.equal(res.rewards, rewards_of(res.designs))
    if sampler == "first_hitting":  # every candidate changes every step: the budget is exact
        assert res.reward_calls == 1 + n * m * L and res.network_calls == 1 + n * m * (L - 1)
    else:  # candidates that unmask nothing are free
        assert res.reward_calls <= 1 + n * m * 12 and res.network_calls <= 1 + n * m * 11


def test_one_candidate_at_zero_temperature_is_plain_sampling():
    for sampler in (6, "first_hitting"):
        model = tiny_model(sampler=sampler)
        res = svdd_pm(model, count_zero, 16, candidates=1, alpha=0.0, generator=gen(2))
        assert torch.equal(res.designs, model.sample(16, generator=gen(2)))


def test_reproducible_and_chunking_changes_nothing():
    model = tiny_model()
    a = svdd_pm(model, count_zero, 6, candidates=4, alpha=0.5, generator=gen(5))
    b = svdd_pm(model, count_zero, 6, candidates=4, alpha=0.5, generator=gen(5), batch_size=5)
    c = svdd_pm(model, count_zero, 6, candidates=4, alpha=0.5, generator=gen(6))
    assert torch.equal(a.designs, b.designs) and a.reward_calls == b.reward_calls
    assert not torch.equal(a.designs, c.designs)


def test_pm_beats_pretrained_samples():
    model = tiny_model()
    res = svdd_pm(model, count_zero, 100, candidates=8, alpha=0.0, generator=gen())
    assert res.rewards.mean() > plain_mean(model) + 2.0


def test_rollout_is_the_pretrained_sampler_run_from_the_state():
    model = tiny_model(sampler="first_hitting")
    xs = torch.full((50, L), model.mask_id)
    xs[:, 0] = 0
    xs[:2, :] = 1  # a clean row comes back unchanged
    done = rollout(model, xs, x0_log_probs(model, xs, None), model.sampler, 1, gen())
    assert (done[:, 0] == 0)[2:].all() and (done[:2] == 1).all()
    # Same draws in the same order as the model's own sampler started from xs (first-hitting steps do
    # not depend on their index), so a completion is a draw from p_pre(· | xs).
    assert torch.equal(done, model.sample(50, generator=gen(), x_start=xs))


@pytest.mark.parametrize("sampler", ["first_hitting", 12])
def test_ro_budget_exact_rewards_and_a_value_that_never_falls(sampler):
    model = tiny_model(sampler=sampler)
    n, m = 5, 3
    scored = []  # one reward call a step: n·M completions, design by design

    def recording(x):
        r = count_zero(x)
        scored.append(r.view(n, m))
        return r

    res = svdd_rollout(model, recording, n, candidates=m, alpha=0.0, keep="final",
                       selections=None, generator=gen())
    assert torch.equal(res.rewards, rewards_of(res.designs))
    # The kept completion is always a candidate, so each design ends as the best sequence it scored.
    assert torch.equal(res.rewards, torch.cat(scored, 1).amax(1))
    if sampler == "first_hitting":
        assert res.reward_calls == n * m * L
        assert res.network_calls == 1 + n * m * L * (L - 1) // 2 + n * (L - 2)
    else:  # steps after the last mask is drawn are skipped
        assert res.reward_calls <= n * m * 12
    # The best of the first step's M completions is a floor for the final design (the kept
    # completion is always a candidate): with M = 1 there is nothing to choose among, and the design
    # is one pretrained trajectory's completion.
    one = svdd_rollout(model, count_zero, 200, candidates=1, alpha=0.0, keep="final",
                       selections=None, generator=gen(3))
    assert one.rewards.mean() > plain_mean(model)


@pytest.mark.parametrize("selections", [1, 2, 4])
def test_ro_selections_fix_the_reward_calls_and_count_the_network_calls(selections):
    model = tiny_model(sampler="first_hitting")
    n, m = 5, 3
    res = svdd_rollout(model, count_zero, n, candidates=m, alpha=0.0, keep="final",
                       selections=selections, generator=gen(2))
    starts = selection_starts(L, selections)
    assert len(starts) == selections and starts[0] == 0
    assert res.reward_calls == n * m * selections
    # Selection j's candidates run s_j steps, one network call each but the one that leaves them clean;
    # their completions r_j − 1 more; the kept completion's candidate one call while it is not clean.
    ends = [*starts[1:], L]
    per_candidate = sum(min(e - s, L - s - 1) + max(L - e - 1, 0) for s, e in zip(starts, ends, strict=True))
    assert res.network_calls == 1 + n * m * per_candidate + n * max(selections - 2, 0)
    assert torch.equal(res.rewards, rewards_of(res.designs))
    assert not (res.designs == model.mask_id).any()
    # As many selections as steps is the every-step method, draw for draw.
    every = svdd_rollout(model, count_zero, n, candidates=m, alpha=0.0, keep="final", selections=None,
                         generator=gen(2))
    same = svdd_rollout(model, count_zero, n, candidates=m, alpha=0.0, keep="final", selections=L,
                        generator=gen(2))
    assert torch.equal(every.designs, same.designs) and every.network_calls == same.network_calls


def test_ro_reproducible_chunking_changes_nothing_and_beats_pm_on_a_token_reward():
    model = tiny_model(sampler="first_hitting")
    a = svdd_rollout(model, count_zero, 6, candidates=3, alpha=0.5, keep="best_scored",
                     selections=None, generator=gen(5))
    b = svdd_rollout(model, count_zero, 6, candidates=3, alpha=0.5, keep="best_scored",
                     selections=None, generator=gen(5), batch_size=4)
    assert torch.equal(a.designs, b.designs) and a.network_calls == b.network_calls

    # A reward that reads tokens (argmax) and counts a run of three 0s: the posterior mean's argmax
    # almost never shows one while most positions are masked, a completion often does.
    def run_of_zeros(x):
        z = (x.argmax(-1) == 0).float()
        return (z[:, :-2] * z[:, 1:-1] * z[:, 2:]).amax(-1) + 0.1 * z.sum(-1)

    ro = svdd_rollout(model, run_of_zeros, 100, candidates=4, alpha=0.0, keep="final",
                      selections=None, generator=gen())
    pm = svdd_pm(model, run_of_zeros, 100, candidates=4, alpha=0.0, generator=gen())
    assert ro.reward_calls <= pm.reward_calls
    assert ro.rewards.mean() > pm.rewards.mean()


@pytest.mark.parametrize("sampler", ["first_hitting", 12])
def test_ro_best_scored_returns_the_best_distinct_sequences_of_the_whole_run(sampler):
    model = tiny_model(sampler=sampler)
    n, m = 8, 3
    scored = []

    def recording(x):
        scored.append(x.argmax(-1))
        return count_zero(x)

    best = svdd_rollout(model, recording, n, candidates=m, alpha=0.0, keep="best_scored",
                        selections=None, generator=gen(4))
    everything = torch.unique(torch.cat(scored), dim=0)
    # The same run (keeping reads no random draw), returning each design's own best instead.
    final = svdd_rollout(model, count_zero, n, candidates=m, alpha=0.0, keep="final",
                         selections=None, generator=gen(4))
    assert best.reward_calls == final.reward_calls and best.network_calls == final.network_calls
    assert torch.equal(best.rewards, rewards_of(best.designs))
    assert len(torch.unique(best.designs, dim=0)) == n  # distinct, each one of the scored sequences
    assert all((everything == d).all(-1).any() for d in best.designs)
    top = rewards_of(everything).sort(descending=True).values[:n]
    assert torch.equal(best.rewards, top)  # best first, and no scored sequence left out beats one kept
    assert best.rewards.mean() >= final.rewards.mean()


def test_ro_best_scored_fills_with_repeats_when_fewer_distinct_sequences_were_scored():
    model = tiny_model(sampler="first_hitting", length=1)  # V sequences in all
    res = svdd_rollout(model, count_zero, 12, candidates=2, alpha=0.0, keep="best_scored",
                       selections=None, generator=gen())
    assert res.designs.shape == (12, 1) and torch.equal(res.rewards, rewards_of(res.designs))
    assert len(torch.unique(res.designs)) < 12 and int(res.designs[0, 0]) == 0


def test_mc_budget_value_fit_and_beats_pretrained_samples():
    model = tiny_model(sampler="first_hitting")
    n, m = 100, 8
    a = svdd_mc(model, count_zero, n, candidates=m, alpha=0.0, generator=gen(), **MC)
    assert a.reward_calls == MC["rollouts"] + n
    assert a.network_calls == MC["rollouts"] * L + 1 + n * (L - 1)
    assert a.info["value_calls"] == 1 + n * m * L
    assert a.info["value_loss"] < 0.8  # better than a constant (the masked positions are noise)
    assert torch.equal(a.rewards, rewards_of(a.designs))
    assert a.rewards.mean() > plain_mean(model) + 1.5
    b = svdd_mc(model, count_zero, n, candidates=m, alpha=0.0, generator=gen(), **MC)
    assert torch.equal(a.designs, b.designs)


def test_settings_are_checked():
    model = tiny_model()
    with pytest.raises(ValueError, match="svdd_pm: candidates must be an integer >= 1, got 0"):
        svdd_pm(model, count_zero, 2, candidates=0, alpha=0.0)
    with pytest.raises(ValueError, match="svdd_rollout: candidates must be an integer >= 1, got 0"):
        svdd_rollout(model, count_zero, 2, candidates=0, alpha=0.0, keep="final", selections=None)
    with pytest.raises(ValueError, match="svdd_rollout: keep must be one of"):
        svdd_rollout(model, count_zero, 2, candidates=1, alpha=0.0, keep="best", selections=None)
    with pytest.raises(ValueError, match="svdd_rollout: selections must be an integer >= 1, got 0"):
        svdd_rollout(model, count_zero, 2, candidates=1, alpha=0.0, keep="final", selections=0)
    with pytest.raises(ValueError, match="svdd_mc: value_lr must be a finite number > 0"):
        svdd_mc(model, count_zero, 2, candidates=2, alpha=0.0, **{**MC, "value_lr": 0.0})
    with pytest.raises(ValueError, match="dim must be a positive multiple of 4"):
        svdd_mc(model, count_zero, 2, candidates=2, alpha=0.0, **{**MC, "value_dim": 6})


@pytest.mark.parametrize("alpha", [1e-12, 1e-40, 1e-300])
def test_a_vanishing_alpha_selects_the_best_candidate_never_a_nan(alpha):
    # v/α overflowed float32 (1e-300 is 0 there: 0/0 = NaN, which argmax takes as the largest), so a
    # tiny α picked the first or a NaN candidate instead of the best; ties now draw among the best.
    v = torch.tensor([[0.0, 2.0, 1.0], [-3.0, -1e-3, -2.0]])
    assert select_candidates(v, alpha, gen()).tolist() == [1, 1]
    tie = select_candidates(torch.tensor([[5.0, 5.0, -1.0]]).expand(400, -1), alpha, gen())
    assert set(tie.tolist()) == {0, 1}
    model = tiny_model()
    small = svdd_pm(model, count_zero, 12, candidates=4, alpha=alpha, generator=gen())
    assert small.rewards.mean() > plain_mean(model) + 1.0
