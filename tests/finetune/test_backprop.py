import pytest
import torch

from mbo.diffusion import MaskedDiffusion, TransformerDenoiser, masked, pretrain
from mbo.finetune import finetune_backprop

VOCAB, LENGTH = 3, 4
# Settings the tests do not vary (the defaults of the finetune/backprop config group, fewer steps).
FIXED = dict(backprop_steps=2, tau=1.0, hard=True, grad_clip=1.0)


@pytest.fixture(scope="module")
def pretrained():
    torch.manual_seed(0)
    corpus = torch.randint(0, VOCAB, (256, LENGTH), generator=torch.Generator().manual_seed(0))
    model = MaskedDiffusion(TransformerDenoiser(VOCAB, LENGTH, dim=32, depth=1, heads=2), VOCAB, LENGTH)
    pretrain(model, corpus, steps=150, batch_size=64, lr=3e-3, weight_decay=0.01, warmup=10)
    return model


def count_of_token0(x):
    """A differentiable reward on (soft) one-hot: expected number of token-0 positions."""
    return x[..., 0].sum(-1)


def frac_token0(model, n=512):
    x = model.sample(n, sampler=8, generator=torch.Generator().manual_seed(1))
    return (x == 0).float().mean().item()


def tune(pretrained, alpha, iterations=40):
    return finetune_backprop(pretrained, count_of_token0, iterations=iterations, batch_size=32,
                             alpha=alpha, sampler=8, lr=3e-3, seed=0, **FIXED)


def test_reward_goes_up_and_pretrained_is_untouched(pretrained):
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    tuned, history = tune(pretrained, alpha=0.01)
    assert frac_token0(tuned) > frac_token0(pretrained) + 0.2
    assert history[-1]["reward"] > history[0]["reward"]
    assert history[-1]["kl"] > 0
    for k, v in pretrained.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_stronger_kl_leash_stays_closer(pretrained):
    _, loose = tune(pretrained, alpha=0.01)
    _, tight = tune(pretrained, alpha=2.0)
    assert tight[-1]["kl"] < loose[-1]["kl"]


def test_same_seed_same_model(pretrained):
    a, _ = tune(pretrained, alpha=0.1, iterations=5)
    b, _ = tune(pretrained, alpha=0.1, iterations=5)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, msg=k)


def test_kl_budget_stops_early(pretrained):
    _, history = finetune_backprop(pretrained, lambda x: 100 * count_of_token0(x), iterations=50,
                                   batch_size=16, alpha=0.0, sampler=8, lr=1e-2,
                                   kl_budget=0.5, **FIXED)
    assert len(history) < 50 and history[-1]["kl"] > 0.5


def test_logs_conservative_components(pretrained):
    class WithComponents(torch.nn.Module):
        def forward(self, x):
            return count_of_token0(x)

        def components(self, x):
            return count_of_token0(x), torch.zeros(x.shape[0])

    _, history = finetune_backprop(pretrained, WithComponents(), iterations=2, batch_size=8, alpha=0.1,
                                   sampler=4, lr=1e-3, **FIXED)
    assert {"mean", "g", "reward", "kl"} <= history[0].keys()


def test_long_sequences_draw_the_batch_as_several_chains(pretrained, monkeypatch):
    # Each chain keeps K steps of rows with gradients; past L ≈ 256 the batch is drawn in parts whose
    # losses and gradients add up to the batch's.
    sizes = []
    real = MaskedDiffusion.sample_relaxed

    def counted(self, n, *args, **kwargs):
        sizes.append(n)
        return real(self, n, *args, **kwargs)

    monkeypatch.setattr(MaskedDiffusion, "sample_relaxed", counted)
    monkeypatch.setattr(masked, "PAIRS_PER_PASS", FIXED["backprop_steps"] * LENGTH**2 * 3)  # 3 designs
    tuned, history = finetune_backprop(pretrained, count_of_token0, iterations=2, batch_size=8, alpha=0.1,
                                       sampler=4, lr=1e-3, seed=0, **FIXED)
    assert sizes == [3, 3, 2] * 2 and len(history) == 2
    assert all(torch.isfinite(torch.tensor([h["loss"], h["reward"], h["kl"]])).all() for h in history)
    pairs = zip(tuned.parameters(), pretrained.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
