"""Each inference-time method against the exact law it draws, on a problem small enough to enumerate.

The denoiser is :class:`~tests.diffusion.test_exactness.ExactDenoiser` (the true conditionals of a known
joint p over the V^L = 27 sequences, V = L = 3), and sampling is first-hitting, so the pretrained sampler
draws p exactly. Each method's law is then computed by enumeration (SVDD: every M-tuple of candidates
of every step; best-of-N: order statistics; SMC and gradient guidance: their target p* ∝ p·exp(r/α))
and compared with the empirical law of its designs by total variation (TV). An exact i.i.d. draw of
20,000 designs from such a law has TV ≈ 0.010 to it; of 2,000, ≈ 0.03.
"""

import itertools
import math
from collections import defaultdict

import pytest
import torch
from torch import Tensor

from mbo.data.alphabet import one_hot
from mbo.diffusion import MaskedDiffusion
from mbo.guidance import (
    best_of_n,
    gradient_guidance,
    iterative_refinement,
    smc,
    svdd_mc,
    svdd_pm,
    svdd_rollout,
)
from tests.diffusion.test_exactness import ExactDenoiser, index, joint

V, L, MASK = 3, 3, 3
SEQS = torch.tensor(list(itertools.product(range(V), repeat=L)))  # (27, L), the order of index()
W = torch.tensor([[0.0, 1.0, -0.5], [0.3, -1.0, 0.8], [1.2, 0.0, -0.3]])


def linear(x: Tensor) -> Tensor:
    """r(x) = Σ_i W[i, x_i]: float (soft) one-hot ``(B, L, V)`` -> ``(B,)``."""
    return (x * W).sum((-1, -2))


def coupled(x: Tensor) -> Tensor:
    """``linear`` plus an interaction of positions 0 and 2 (not separable): ``(B, L, V)`` -> ``(B,)``."""
    return linear(x) + 1.5 * x[:, 0, 2] * x[:, 2, 2]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def exact_model(p: Tensor) -> MaskedDiffusion:
    return MaskedDiffusion(ExactDenoiser(p), V, L, sampler="first_hitting").eval()


def reward_of(seqs: Tensor, reward) -> Tensor:
    return reward(one_hot(seqs, V).float())


def tilted(p: Tensor, reward, alpha: float) -> Tensor:
    """p* ∝ p·exp(r/α) over :data:`SEQS`, float64 ``(27,)``."""
    q = p * torch.exp(reward_of(SEQS, reward).double() / alpha)
    return q / q.sum()


def tv(designs: Tensor, law: Tensor) -> float:
    freq = torch.bincount(index(designs), minlength=V**L).double() / len(designs)
    return 0.5 * (freq - law).abs().sum().item()


def posterior_mean(den: ExactDenoiser, state: tuple) -> Tensor:
    """x̂_0 of a state (tuple of L tokens, MASK = V) with carry-over: float64 ``(L, V)``."""
    s = torch.tensor(state)
    probs = den.table[(s * den.base).sum()].double().exp()
    hot = torch.nn.functional.one_hot(s.clamp_max(V - 1), V).double()
    return torch.where((s == MASK)[:, None], probs, hot)


def steps_from(den: ExactDenoiser, state: tuple) -> list[tuple[tuple, float]]:
    """Every first-hitting step from ``state``: (next state, probability)."""
    masked = [i for i in range(L) if state[i] == MASK]
    probs = posterior_mean(den, state)
    return [((*state[:i], v, *state[i + 1:]), probs[i, v].item() / len(masked))
            for i in masked for v in range(V)]


def selection(values: Tensor, alpha: float) -> Tensor:
    """P(keep candidate j) for ``values (M,)``: one-hot of the first argmax at α = 0, else softmax(v/α)."""
    if alpha == 0:
        return torch.nn.functional.one_hot(values.argmax(), len(values)).double()
    return torch.softmax(values.double() / alpha, 0)


def as_vector(law: dict) -> Tensor:
    out = torch.zeros(V**L, dtype=torch.float64)
    for state, prob in law.items():
        out[index(torch.tensor(state)[None])[0]] += prob
    return out


def svdd_pm_law(p: Tensor, reward, m: int, alpha: float) -> Tensor:
    """The law of SVDD-PM's designs: M i.i.d. first-hitting candidates per step, value r(x̂_0(candidate))."""
    den = ExactDenoiser(p)
    law = {(MASK,) * L: 1.0}
    for _ in range(L):
        new = defaultdict(float)
        for state, prob in law.items():
            outs = steps_from(den, state)
            values = [float(reward(posterior_mean(den, s).float()[None])[0]) for s, _ in outs]
            for tup in itertools.product(range(len(outs)), repeat=m):
                keep = selection(torch.tensor([values[j] for j in tup]), alpha)
                q = prob * math.prod(outs[j][1] for j in tup)
                for a, j in enumerate(tup):
                    new[outs[j][0]] += q * keep[a].item()
        law = new
    return as_vector(law)


def svdd_rollout_law(p: Tensor, reward, alpha: float) -> Tensor:
    """The law of SVDD-RO's designs at M = 1: each step one fresh candidate with one pretrained completion
    (value its reward), and from the second step the kept completion's tokens at a uniformly chosen
    masked position (value already known); ties keep the fresh one."""
    den = ExactDenoiser(p)
    r = reward_of(SEQS, reward)  # float32, as the method compares them

    def completions(state):
        fits = ((SEQS == torch.tensor(state)) | (torch.tensor(state) == MASK)).all(-1)
        w = torch.where(fits, p, 0.0) / torch.where(fits, p, 0.0).sum()
        return [(tuple(SEQS[j].tolist()), w[j].item()) for j in range(len(SEQS)) if fits[j]]

    law = {((MASK,) * L, None): 1.0}
    for _ in range(L):
        new = defaultdict(float)
        for (state, kept), prob in law.items():
            fresh = [(s, c, q * qc) for s, q in steps_from(den, state) for c, qc in completions(s)]
            masked = [i for i in range(L) if state[i] == MASK]
            inc = [] if kept is None else [
                ((*state[:i], kept[i], *state[i + 1:]), kept, 1 / len(masked)) for i in masked]
            for s, c, q in fresh:
                for cand in inc or [None]:
                    cands = [(s, c)] + ([cand[:2]] if cand else [])
                    values = torch.stack([r[index(torch.tensor(x)[None])[0]] for _, x in cands])
                    keep = selection(values, alpha)
                    for a, key in enumerate(cands):
                        new[key] += prob * q * (cand[2] if cand else 1.0) * keep[a].item()
        law = new
    return as_vector({state: prob for (state, _), prob in law.items()})


@pytest.mark.parametrize(("m", "alpha"), [(2, 0.0), (3, 0.5)])
def test_svdd_pm_draws_its_enumerated_law_argmax_at_zero_softmax_above(m, alpha):
    # SVDD is greedy by design: its law is not p* (TV 0.35-0.45 here), but exactly the enumerated one.
    p = joint(0)
    law = svdd_pm_law(p, coupled, m, alpha)
    res = svdd_pm(exact_model(p), coupled, 20000, candidates=m, alpha=alpha, generator=gen(m))
    assert tv(res.designs, law) < 0.025  # measured 0.009 / 0.009
    assert 0.5 * (law - tilted(p, coupled, 0.5)).abs().sum() > 0.2


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_svdd_rollout_draws_its_enumerated_law_with_the_kept_completion_as_a_candidate(alpha):
    p = joint(0)
    law = svdd_rollout_law(p, coupled, alpha)
    res = svdd_rollout(exact_model(p), coupled, 20000, candidates=1, alpha=alpha, keep="final",
                       selections=None, generator=gen(7))
    assert tv(res.designs, law) < 0.025
    assert 0.5 * (law - p).abs().sum() > 0.1  # the incumbent alone moves it away from the prior


def best_of_law(p: Tensor, reward, n_samples: int) -> Tensor:
    """The law of the best of N prior samples: P(best in a reward class c) = F(≤ c)^N − F(< c)^N, shared
    within the class ∝ p (whichever tie is kept, the samples are exchangeable)."""
    r = reward_of(SEQS, reward).double()
    le = torch.stack([(p * (r <= x)).sum() for x in r])
    lt = torch.stack([(p * (r < x)).sum() for x in r])
    same = torch.stack([(p * (r == x)).sum() for x in r])
    return (le**n_samples - lt**n_samples) * p / same


def test_svdd_rollout_with_one_selection_is_the_best_of_m_prior_samples():
    # One selection at step 0: each candidate runs every pretrained step (a prior sample, its own
    # completion) and the best of the M is kept.
    p = joint(0)
    res = svdd_rollout(exact_model(p), coupled, 20000, candidates=4, alpha=0.0, keep="final",
                       selections=1, generator=gen(8))
    assert res.reward_calls == 20000 * 4
    assert tv(res.designs, best_of_law(p, coupled, 4)) < 0.025


def test_best_of_n_draws_the_law_of_the_best_of_n_prior_samples():
    p = joint(0)
    res = best_of_n(exact_model(p), coupled, 20000, num_samples=4, generator=gen(4))
    assert tv(res.designs, best_of_law(p, coupled, 4)) < 0.025  # measured 0.014


def test_smc_with_many_particles_draws_the_tilted_target():
    # 2,000 designs at K = 256 (measured 0.024 against p*, 0.65 against p; K = 16: 0.23, K = 64: 0.067,
    # K = 1,024: 0.013 at 4,000 designs: the finite-K bias shrinks as K grows).
    p, alpha = joint(0), 0.5
    target = tilted(p, coupled, alpha)
    res = smc(exact_model(p), coupled, 2000, particles=256, alpha=alpha, ess_threshold=0.5,
              resampling="systematic", generator=gen(3))
    assert tv(res.designs, target) < 0.07
    assert tv(res.designs, p) > 0.5


@pytest.mark.parametrize("sampler", ["first_hitting", 2])
def test_gradient_guidance_of_a_linear_reward_on_a_product_prior_draws_the_tilted_target(sampler):
    # With independent positions p* ∝ Π_i p_i(x_i)·exp(W[i, x_i]/α) is the per-position tilt by W/α,
    # which is what scale 1 adds to the logits (∇r = W at any x̂_0); exact for any sampler.
    q = torch.rand(L, V, generator=gen(3), dtype=torch.float64) + 0.1
    q = q / q.sum(-1, keepdim=True)
    p = q[0][SEQS[:, 0]] * q[1][SEQS[:, 1]] * q[2][SEQS[:, 2]]
    model = MaskedDiffusion(ExactDenoiser(p), V, L, sampler=sampler).eval()
    for alpha, scale in ((0.5, 1.0), (1.0, 0.5)):
        res = gradient_guidance(model, linear, 20000, alpha=alpha, scale=scale, generator=gen(11))
        target = tilted(p, linear, alpha / scale)
        assert tv(res.designs, target) < 0.025  # measured 0.004-0.013
        assert 0.5 * (target - p).abs().sum() > 0.2


def test_same_seed_same_designs_chunking_changes_nothing_and_the_global_rng_is_untouched():
    model = exact_model(joint(0))
    runs = {
        "svdd_pm": lambda g, b: svdd_pm(model, coupled, 6, candidates=3, alpha=0.3, generator=g,
                                        batch_size=b),
        "svdd_rollout": lambda g, b: svdd_rollout(model, coupled, 6, candidates=3, alpha=0.3,
                                                  keep="best_scored", selections=None, generator=g,
                                                  batch_size=b),
        "smc": lambda g, b: smc(model, coupled, 6, particles=5, alpha=0.3, ess_threshold=0.5,
                                resampling="multinomial", generator=g, batch_size=b),
        "gradient": lambda g, b: gradient_guidance(model, linear, 6, alpha=0.5, scale=1.0, generator=g,
                                                   batch_size=b),
        "refinement": lambda g, b: iterative_refinement(model, coupled, 6, rounds=2, remask_fraction=0.5,
                                                        candidates=2, alpha=0.3, generator=g, batch_size=b),
    }
    torch.manual_seed(0)
    state = torch.get_rng_state()
    for name, run in runs.items():
        a, b, c = run(gen(0), None), run(gen(0), None), run(gen(0), 1)
        assert torch.equal(a.designs, b.designs) and torch.equal(a.designs, c.designs), name
        assert (a.reward_calls, a.network_calls) == (c.reward_calls, c.network_calls), name
    mc = dict(candidates=2, alpha=0.3, rollouts=16, value_steps=3, value_batch_size=8, value_lr=1e-3,
              value_dim=8, value_depth=1)
    a, b = (svdd_mc(model, coupled, 6, generator=gen(0), **mc) for _ in range(2))
    assert torch.equal(a.designs, b.designs)
    assert torch.equal(torch.get_rng_state(), state)
