"""Exactness of the masked process on problems small enough to enumerate (V = 3, L = 3: 27 sequences).

:class:`ExactDenoiser` returns the TRUE conditionals p(x_i | unmasked positions) of a known joint p, by
enumeration. With them the NELBO equals −log p(x), the first-hitting sampler draws p exactly, the grid
sampler draws its own (factorized) law, and per-step log-probs and KLs are hand-checkable.
"""

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from mbo.diffusion import GridSampler, MaskedDiffusion
from mbo.diffusion.policy import MinProbability

V, L = 3, 3


class ExactDenoiser(nn.Module):
    """Logits ``(B, L, V)`` = log p(x_i | the unmasked tokens of ``x (B, L, V+1)``) of the joint ``p``
    ``(V^L,)`` over :attr:`seqs` (lexicographic). No parameters: a lookup table over the (V+1)^L states."""

    def __init__(self, p: Tensor, vocab: int = V, length: int = L) -> None:
        super().__init__()
        self.seqs = torch.tensor(list(itertools.product(range(vocab), repeat=length)))
        states = torch.tensor(list(itertools.product(range(vocab + 1), repeat=length)))
        table = []
        for s in states:
            fits = ((self.seqs == s) | (s == vocab)).all(-1)
            w = torch.where(fits, p, 0.0)
            probs = torch.zeros(length, vocab, dtype=torch.float64)
            probs.scatter_add_(1, self.seqs.T.contiguous(), (w / w.sum()).expand(length, -1))
            table.append(probs.clamp_min(1e-30).log().float())
        self.register_buffer("table", torch.stack(table))
        self.register_buffer("base", (vocab + 1) ** torch.arange(length - 1, -1, -1))

    def forward(self, x: Tensor) -> Tensor:
        return self.table[(x.argmax(-1) * self.base).sum(-1)]


def joint(seed: int) -> Tensor:
    """A skewed random joint over the V^L sequences, float64 ``(V^L,)``."""
    p = torch.rand(V**L, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) ** 3 + 0.01
    return p / p.sum()


def index(x: Tensor) -> Tensor:
    """Row of each sequence ``(N, L)`` in :attr:`ExactDenoiser.seqs`."""
    return (x * V ** torch.arange(L - 1, -1, -1)).sum(-1)


def test_a_denoiser_without_parameters_samples_and_scores():
    # A fixed or exact-conditional denoiser (diagnostics) has no parameters; the model's device and
    # input dtype were read from next(parameters()), a bare StopIteration from every method.
    p = joint(0)
    m = MaskedDiffusion(ExactDenoiser(p), V, L)
    assert m.device == torch.device("cpu") and m.dtype == torch.float32
    x = m.sample(4, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.long and x.shape == (4, L)
    assert m.elbo(x, n_samples=2).shape == (4,)
    tr = m.sample(2, sampler="first_hitting", ref=m, return_trajectory=True)
    assert torch.equal(tr.kls, torch.zeros_like(tr.kls))
    assert m.on_support_of(m).sample(2).shape == (2, L)


def test_first_hitting_log_probs_sum_to_the_exact_log_likelihood():
    # Exact conditionals factorize the joint in every unmasking order.
    p = joint(0)
    m = MaskedDiffusion(ExactDenoiser(p), V, L)
    tr = m.sample(500, sampler="first_hitting", generator=torch.Generator().manual_seed(0),
                  return_trajectory=True)
    assert torch.allclose(tr.log_probs.sum(0).double(), p.log()[index(tr.x0)], atol=1e-5)


def test_elbo_of_exact_conditionals_is_log_p_within_monte_carlo_error():
    # E[elbo] = log p(x) up to the [0, eps] part of the time integral (< 0.005 nats here).
    p = joint(0)
    m = MaskedDiffusion(ExactDenoiser(p), V, L)
    gen = torch.Generator().manual_seed(0)
    runs = torch.stack([m.elbo(m.denoiser.seqs, n_samples=2000, generator=gen) for _ in range(20)]).double()
    err = runs.mean(0) - p.log()
    sem = runs.std(0) / math.sqrt(len(runs))
    assert (err.abs() < 4 * sem + 0.005).all(), (err / sem).tolist()


@pytest.mark.parametrize("sampler", ["first_hitting", 2])
def test_samplers_draw_their_exact_law(sampler):
    # First hitting: p itself. A 2-step grid: the law of two factorized steps, computed here by hand:
    # each masked position unmasks w.p. 1/2 at the first step (its token from p(x_i)), the rest at the
    # second given those.
    p = joint(0)
    den = ExactDenoiser(p)
    m = MaskedDiffusion(den, V, L)
    if sampler == "first_hitting":
        want = p
    else:
        want = torch.zeros_like(p)
        first = den.table[(torch.full((L,), V) * den.base).sum()].double().exp()
        for subset in itertools.product([0, 1], repeat=L):
            shown = torch.tensor(subset).bool()
            for j, x in enumerate(den.seqs):
                xt = torch.where(shown, x, V)
                second = den.table[(xt * den.base).sum()].double().exp()
                pick = torch.where(shown, first[range(L), x], second[range(L), x])
                want[j] += 0.5**L * pick.prod()
    n = 20000
    x = m.sample(n, sampler=sampler, generator=torch.Generator().manual_seed(1))
    emp = torch.bincount(index(x), minlength=V**L).double() / n
    tv = 0.5 * (emp - want).abs().sum()
    # An exact i.i.d. draw of 20k from these laws has TV ≈ 0.010 (±0.002); the 2-step grid's law is
    # 0.14 from p, so this tells the two apart.
    assert tv < 0.02, tv
    assert sampler == "first_hitting" or 0.5 * (want - p).abs().sum() > 0.1


def test_trajectory_log_probs_and_kls_match_a_hand_computation():
    p, q = joint(0), joint(1)
    model, ref = MaskedDiffusion(ExactDenoiser(p), V, L), MaskedDiffusion(ExactDenoiser(q), V, L)
    steps = 4
    tr = model.sample(3, sampler=steps, generator=torch.Generator().manual_seed(0), ref=ref,
                      return_trajectory=True)
    for k in range(steps):
        t, s = GridSampler(steps).times(k)
        for row in range(3):
            xt, xs = tr.states[k, row], tr.states[k + 1, row]
            lx = model.denoiser.table[(xt * model.denoiser.base).sum()]
            lr = ref.denoiser.table[(xt * ref.denoiser.base).sum()]
            masked, drawn = xt == V, (xt == V) & (xs != V)
            log_prob = sum(float(lx[i, xs[i]]) for i in range(L) if drawn[i])
            pu = 1.0 if s == 0 else (t - s) / t
            kl = pu * sum(float((lx[i].exp() * (lx[i] - lr[i])).sum()) for i in range(L) if masked[i])
            assert float(tr.log_probs[k, row]) == pytest.approx(log_prob, abs=1e-5)
            assert float(tr.kls[k, row]) == pytest.approx(kl, abs=1e-5)


def test_min_p_never_draws_a_cut_token_and_renormalizes_the_rest():
    p = joint(0)
    den = ExactDenoiser(p)
    rule = MinProbability(0.55)
    m = MaskedDiffusion(den, V, L, policy=rule)
    tr = m.sample(2000, sampler="first_hitting", generator=torch.Generator().manual_seed(0),
                  return_trajectory=True)
    for k in range(L):
        xt, xs = tr.states[k], tr.states[k + 1]
        lx = den.table[(xt * den.base).sum(-1)]
        drawn = (xt == V) & (xs != V)
        tok = xs.clamp_max(V - 1)[..., None]
        kept = lx.gather(-1, tok).squeeze(-1) >= lx.max(-1).values + math.log(0.55)
        assert kept[drawn].all()
        renormalized = torch.log_softmax(torch.where(lx >= lx.max(-1, keepdim=True).values + math.log(0.55),
                                                     lx, -math.inf), -1)
        want = torch.where(drawn, renormalized.gather(-1, tok).squeeze(-1), 0.0).sum(-1)
        assert torch.allclose(tr.log_probs[k], want, atol=1e-5)
    # The rule cuts a token somewhere at the first step (else this test would test nothing).
    assert (rule(den.table[-1:]).exp() == 0).any()
