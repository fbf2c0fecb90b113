"""The public API under a caller's unusual torch state: default dtype float64 (BoTorch users), a model
left in train() mode, torch.inference_mode(), and tokens of other integer dtypes."""

import pytest
import torch

from mbo.active.seiko import unseen_pairs, within_trust
from mbo.data.alphabet import one_hot
from mbo.diffusion import MaskedDiffusion, TransformerDenoiser
from mbo.guidance import best_of_n, gradient_guidance, smc, svdd_mc, svdd_pm
from reward_models import DeepEnsemble
from tests.guidance import count_zero, gen, tiny_model
from tests.reward_models.conftest import make_dataset

MC = dict(rollouts=8, value_steps=3, value_batch_size=4, value_lr=1e-3, value_dim=8, value_depth=1)


@pytest.fixture
def float64_default():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def test_sampling_and_guidance_under_float64_default_match_float32(float64_default):
    torch.set_default_dtype(torch.float32)
    model = tiny_model()  # a float32 model, as a caller who set float64 after building it has
    want = model.sample(8, generator=gen(1))
    want_pm = svdd_pm(model, count_zero, 4, candidates=2, alpha=0.5, generator=gen(1)).designs
    torch.set_default_dtype(torch.float64)
    # The same seed draws the same designs whatever the caller's default dtype.
    assert torch.equal(model.sample(8, generator=gen(1)), want)
    got_pm = svdd_pm(model, count_zero, 4, candidates=2, alpha=0.5, generator=gen(1)).designs
    assert torch.equal(got_pm, want_pm)
    assert smc(model, count_zero, 4, particles=3, alpha=0.5, ess_threshold=0.5, resampling="systematic",
               generator=gen(1)).designs.shape == (4, 6)
    res = svdd_mc(model, count_zero, 4, candidates=2, alpha=0.5, generator=gen(1), **MC)
    assert res.designs.shape == (4, 6)
    x, _ = model.sample_relaxed(3, sampler=4, generator=gen(1))
    assert x.dtype == torch.float32 and torch.allclose(x.sum(-1).double(), torch.ones(3, 6))


def test_a_float64_model_samples_and_relaxes(float64_default):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = TransformerDenoiser(4, 6, dim=16, depth=1, heads=2, mlp_ratio=2)
        model = MaskedDiffusion(net, 4, 6).eval()
    assert model.dtype == torch.float64
    assert svdd_pm(model, count_zero, 4, candidates=2, alpha=0.5, generator=gen(1)).designs.shape == (4, 6)
    res = svdd_mc(model, count_zero, 4, candidates=2, alpha=0.5, generator=gen(1), **MC)
    assert res.designs.shape == (4, 6)
    x, _ = model.sample_relaxed(3, sampler=4, generator=gen(1))
    assert torch.allclose(x.sum(-1).double(), torch.ones(3, 6))


def test_ensemble_fit_under_float64_default_matches_float32(float64_default):
    data = make_dataset()
    x = one_hot(data.tokens[:5], 4)
    torch.set_default_dtype(torch.float32)
    want = DeepEnsemble(num_members=2, epochs=3).fit(data, seed=0).mean_std(x)
    torch.set_default_dtype(torch.float64)
    got = DeepEnsemble(num_members=2, epochs=3, conv_channels=[4], hidden_dims=[4]).fit(data, seed=0)
    assert got.mean_std(x)[0].shape == (5,)
    got = DeepEnsemble(num_members=2, epochs=3).fit(data, seed=0).mean_std(x)
    # The same float32 members from the seed (Adam's float64 scalars move the last bits only).
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want, strict=True))


def test_sampling_and_guidance_use_eval_mode_and_restore_the_callers_mode():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = TransformerDenoiser(4, 6, dim=16, depth=1, heads=2, mlp_ratio=2, dropout=0.5)
        model = MaskedDiffusion(net, 4, 6)
    runs = [lambda: model.sample(16, generator=gen(1)),
            lambda: best_of_n(model, count_zero, 8, num_samples=2, generator=gen(1)).designs,
            lambda: svdd_pm(model, count_zero, 8, candidates=2, alpha=0.5, generator=gen(1)).designs]
    for run in runs:
        model.eval()
        want = run()
        model.train()
        assert torch.equal(run(), want)  # dropout stays off while sampling
        assert model.training and model.denoiser.blocks[0].drop.training  # the caller's mode is back
    assert not model.eval().training


def test_sampling_only_methods_work_under_inference_mode():
    model = tiny_model()
    want = gradient_guidance(model, count_zero, 4, alpha=0.5, scale=1.0, generator=gen(1)).designs
    with torch.inference_mode():
        got = gradient_guidance(model, count_zero, 4, alpha=0.5, scale=1.0, generator=gen(1)).designs
        res = svdd_mc(model, count_zero, 4, candidates=2, alpha=0.5, generator=gen(1), **MC)
    assert torch.equal(got, want) and res.designs.shape == (4, 6)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_token_helpers_take_any_integer_dtype(dtype):
    tokens = torch.randint(4, (10, 5), generator=gen(0))
    assert torch.equal(one_hot(tokens.to(dtype), 4), one_hot(tokens, 4))
    assert torch.equal(unseen_pairs(tokens.to(dtype), tokens[:4].to(dtype)), unseen_pairs(tokens, tokens[:4]))
    assert torch.equal(within_trust(tokens.to(dtype), tokens[:4].to(dtype), 1, 3),
                       within_trust(tokens, tokens[:4], 1, 3).to(dtype))
    with pytest.raises(ValueError, match="integer tokens"):
        one_hot(tokens.float(), 4)


@pytest.mark.parametrize("name", ["finetune_vidd", "finetune_backprop", "finetune_ppo", "finetune_rwr"])
def test_finetuners_train_a_float64_model_under_float64_default(float64_default, name):
    from tests.test_training_under_no_grad import CASES

    before, after = CASES[name]()  # the tiny model is built, in float64, under the default
    assert all(t.dtype == torch.float64 and bool(torch.isfinite(t).all()) for t in after)
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


@pytest.mark.parametrize("name", ["finetune_vidd", "finetune_backprop", "finetune_ppo", "finetune_rwr"])
def test_finetuners_leave_the_callers_pretrained_model_as_it_was(name):
    from tests.test_training_under_no_grad import CASES, tiny_diffusion

    pretrained = tiny_diffusion().train()
    pretrained.denoiser.blocks[0].requires_grad_(False)  # the caller froze part of it
    modes = [m.training for m in pretrained.modules()]
    grads = [p.requires_grad for p in pretrained.parameters()]
    CASES[name](model=pretrained)
    assert [m.training for m in pretrained.modules()] == modes
    assert [p.requires_grad for p in pretrained.parameters()] == grads
