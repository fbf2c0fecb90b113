"""SMC: resampling, budget, K = 1 is plain sampling, and convergence to the exact tilted target."""

import itertools
import math

import pytest
import torch

from mbo.guidance import smc
from mbo.guidance.smc import effective_sample_size, resample
from tests.guidance import L, count_zero, gen, plain_mean, rewards_of, tiny_model

SMC = dict(alpha=0.5, ess_threshold=0.5, resampling="systematic")


def exact_prior(model) -> tuple[torch.Tensor, torch.Tensor]:
    """All V^L sequences and their probability under the first-hitting sampler, which unmasks one
    uniformly chosen position at a time: p(x) = mean over orders of the product of conditionals."""
    v, length = model.vocab_size, model.length
    seqs = torch.tensor(list(itertools.product(range(v), repeat=length)))
    orders = list(itertools.permutations(range(length)))
    states, pos, tok = [], [], []
    for x in seqs:
        for order in orders:
            for i, p in enumerate(order):
                s = x.clone()
                s[list(order[i:])] = model.mask_id  # only the positions placed before p are known
                states.append(s)
                pos.append(p)
                tok.append(int(x[p]))
    with torch.no_grad():
        logp = model.x0_log_probs(model.encode(torch.stack(states)))
    terms = logp[torch.arange(len(states)), torch.tensor(pos), torch.tensor(tok)]
    per_order = terms.view(len(seqs), len(orders), length).sum(-1)
    return seqs, per_order.exp().mean(-1)


def test_effective_sample_size_and_resampling():
    log_w = torch.log(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [3.0, 1.0, 0.0, 0.0]]))
    assert torch.allclose(effective_sample_size(log_w), torch.tensor([4.0, 1.0, 1.6]))
    sys_idx = resample(log_w, "systematic", gen())
    assert sys_idx[1].tolist() == [0, 0, 0, 0] and sorted(sys_idx[2].tolist()) == [0, 0, 0, 1]
    many = resample(log_w[2:].expand(20000, -1), "multinomial", gen())
    assert torch.allclose((many == 0).float().mean(), torch.tensor(0.75), atol=0.01)
    with pytest.raises(ValueError, match="resampling must be one of"):
        resample(log_w, "stratified")


@pytest.mark.parametrize("sampler", ["first_hitting", 10])
def test_budget_and_exact_rewards(sampler):
    model = tiny_model(sampler=sampler)
    n, k = 6, 4
    res = smc(model, count_zero, n, particles=k, generator=gen(), **SMC)
    assert res.designs.shape == (n, L) and torch.equal(res.rewards, rewards_of(res.designs))
    assert 1.0 <= res.info["final_ess"] <= k and 0.0 <= res.info["resample_rate"] <= 1.0
    if sampler == "first_hitting":
        assert res.reward_calls == 1 + n * k * L and res.network_calls == 1 + n * k * (L - 1)
    else:
        assert res.reward_calls <= 1 + n * k * 10 and res.network_calls <= 1 + n * k * 9


def test_reproducible_and_one_particle_is_plain_sampling():
    model = tiny_model()
    a = smc(model, count_zero, 8, particles=4, generator=gen(1), **SMC)
    b = smc(model, count_zero, 8, particles=4, generator=gen(1), batch_size=3, **SMC)
    assert torch.equal(a.designs, b.designs)
    one = smc(model, count_zero, 8, particles=1, generator=gen(1), **SMC)
    assert torch.equal(one.designs, model.sample(8, generator=gen(1)))


def test_beats_pretrained_samples():
    model = tiny_model()
    res = smc(model, count_zero, 100, particles=8, generator=gen(), **SMC)
    assert res.rewards.mean() > plain_mean(model) + 1.0


def test_converges_to_the_exact_tilted_target_as_particles_grow():
    model = tiny_model(sampler="first_hitting", vocab=2, length=3)
    seqs, prior = exact_prior(model)
    assert math.isclose(prior.sum().item(), 1.0, rel_tol=1e-5)
    alpha = 1.0  # a tilt of e^3 across the space: the all-0 sequence goes from 0.2 % to 2 %
    target = prior * torch.exp(rewards_of(seqs, vocab=2) / alpha)
    target = target / target.sum()
    n = 4000
    code = 2 ** torch.arange(2, -1, -1)  # base-2 index of a sequence, as itertools.product orders them

    def tv(particles: int, resampling: str = "systematic") -> float:
        res = smc(model, count_zero, n, particles=particles, alpha=alpha, ess_threshold=0.5,
                  resampling=resampling, generator=gen(particles))
        freq = torch.bincount((res.designs * code).sum(-1), minlength=len(seqs)).float() / n
        return 0.5 * (freq - target).abs().sum().item()

    curve = [tv(k) for k in (1, 4, 64)]
    assert 0.5 * (prior - target).abs().sum() > 0.25 and curve[0] > 0.25  # K = 1 samples the prior
    assert curve[0] > curve[1] > curve[2]
    assert curve[2] < 0.04  # 4000 draws: sampling noise alone is ~0.015
    assert tv(16, "multinomial") < 0.07  # systematic at K = 16: 0.036


@pytest.mark.parametrize("alpha", [1e-40, 1e-300])
def test_a_vanishing_alpha_is_the_greedy_limit_not_nan(alpha):
    # Δv/α overflowed float32 into log-weights of ±inf: NaN weights, a NaN final ESS and a final draw
    # of whichever particle came first. The limit is the same as at α = 1e-12.
    model = tiny_model()
    settings = dict(particles=4, ess_threshold=0.5, resampling="systematic")
    res = smc(model, count_zero, 6, alpha=alpha, generator=gen(), **settings)
    ref = smc(model, count_zero, 6, alpha=1e-12, generator=gen(), **settings)
    assert math.isfinite(res.info["final_ess"]) and 1 <= res.info["final_ess"] <= 4
    assert torch.equal(res.designs, ref.designs)
    assert res.rewards.mean() > plain_mean(model) + 1.0
