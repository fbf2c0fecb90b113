import math

import pytest
import torch

from mbo.diffusion import MaskedDiffusion, TransformerDenoiser
from mbo.diffusion.policy import Compose, MinProbability, restrict


def test_min_probability_drops_tokens_below_the_relative_threshold():
    log_p = torch.log(torch.tensor([[[0.60, 0.30, 0.07, 0.03]]]))
    out = MinProbability(0.1)(log_p).exp()
    torch.testing.assert_close(out, torch.tensor([[[0.6 / 0.97, 0.3 / 0.97, 0.07 / 0.97, 0.0]]]))
    assert torch.equal(MinProbability(0.0)(log_p), log_p)
    with pytest.raises(ValueError):
        MinProbability(1.0)


def test_a_policy_holds_for_sampling_and_the_kl_stays_exact():
    torch.manual_seed(0)
    m = MaskedDiffusion(TransformerDenoiser(3, 4, dim=16, depth=1, heads=2), 3, 4, sampler="first_hitting")
    no_zero = lambda lp: restrict(lp, torch.tensor([False, True, True]))  # noqa: E731
    m.policy = Compose(no_zero, MinProbability(0.01))
    for sampler in (4, "first_hitting"):
        x = m.sample(500, sampler=sampler, generator=torch.Generator().manual_seed(1))
        assert not bool((x == 0).any())
    tr = m.sample(64, ref=m, return_trajectory=True)
    assert torch.equal(tr.kls, torch.zeros_like(tr.kls))  # the same policy on both sides: KL exactly 0
    soft, _ = m.sample_relaxed(8, sampler=4, backprop_steps=0)
    assert float(soft.detach()[..., 0].max()) < 1e-6
    lp = m.policy_log_probs(m.encode(torch.full((2, 4), 3))).detach()
    assert math.isclose(float(lp.exp().sum(-1).mean()), 1.0, rel_tol=1e-5)


def test_relaxed_sampling_stays_on_the_references_support():
    # A fine-tuned copy whose own policy allows token 0 while the reference's cuts it (min-p): the
    # relaxed samples must put no mass there, or the KL's log-zero stand-in (1e4 nats per unit of
    # probability) would swamp the reward in reward backprop.
    torch.manual_seed(0)
    ref, model = (MaskedDiffusion(TransformerDenoiser(3, 4, dim=16, depth=1, heads=2), 3, 4,
                                  sampler="first_hitting") for _ in range(2))
    ref.policy = lambda lp: restrict(lp, torch.tensor([False, True, True]))
    soft, kl = model.sample_relaxed(64, backprop_steps=0, ref=ref, generator=torch.Generator().manual_seed(1))
    assert float(soft[..., 0].max()) < 1e-6
    # Untrained networks predict nearly uniformly: a few nats at most, against ~1e3 per step unrestricted.
    assert float(kl.max()) < 5.0
    # The same rule for plain roll-ins (VIDD, PPO), whose recorded KLs stay finite and small too.
    tr = model.sample(64, ref=ref, return_trajectory=True, generator=torch.Generator().manual_seed(2))
    assert not bool((tr.states[-1] == 0).any()) and float(tr.kls.sum(0).max()) < 5.0


def test_a_view_on_the_references_support_shares_the_models_parameters():
    torch.manual_seed(0)
    ref, model = (MaskedDiffusion(TransformerDenoiser(3, 4, dim=16, depth=1, heads=2), 3, 4,
                                  sampler="first_hitting") for _ in range(2))
    ref.policy = lambda lp: restrict(lp, torch.tensor([False, True, True]))
    view = model.on_support_of(ref)
    # What a fine-tuner or a checkpoint would see is the model's own parameters, not the reference's.
    assert [id(p) for p in view.parameters()] == [id(p) for p in model.parameters()]
    lp = view.policy_log_probs(view.encode(torch.full((5, 4), 3))).detach()
    assert float(lp[..., 0].exp().max()) < 1e-6
    assert torch.allclose(lp.exp().sum(-1), torch.ones(5, 4))
    assert not bool((view.sample(200, generator=torch.Generator().manual_seed(1)) == 0).any())
