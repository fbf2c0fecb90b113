"""Every public training entry point trains when its caller is inside ``torch.no_grad()`` (a notebook,
evaluation code, or experiments/bench_support.py pretraining a prior on an empty cache), and trains
exactly as it does with gradients enabled."""

from functools import partial

import pytest
import torch

from mbo.ctrl import ConditionLogProb, ConditionSampler, EnsembleClassifier, Factor, finetune_ctrl
from mbo.ctrl.conditional import make_conditional
from mbo.ctrl.train import train_conditional
from mbo.data.alphabet import DNA, one_hot
from mbo.data.dataset import SequenceDataset
from mbo.diffusion import MaskedDiffusion, TransformerDenoiser, pretrain
from mbo.finetune import finetune_backprop, finetune_ppo, finetune_rwr, finetune_vidd
from mbo.guidance import fit_value_network, gradient_guidance
from mbo.reward_optimizers import gradient_ascent
from reward_models import (
    CategoricalGP,
    DeepEnsemble,
    ExtrapolationCalibrated,
    FeatureBonus,
    OneHotGP,
    VariationalGP,
)

V, L = 4, 5


def tiny_diffusion() -> MaskedDiffusion:
    torch.manual_seed(0)
    return MaskedDiffusion(TransformerDenoiser(V, L, dim=16, depth=1, heads=2), V, L).eval()


def corpus() -> torch.Tensor:
    return torch.randint(0, V, (64, L), generator=torch.Generator().manual_seed(0))


def dataset(n: int = 48) -> SequenceDataset:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(V, (n, L), generator=gen)
    return SequenceDataset(tokens, DNA, (tokens == 2).float().sum(1) + 0.1 * torch.randn(n, generator=gen))


def token0(x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable in its (soft) one-hot: the expected number of token-0 positions."""
    return x[..., 0].sum(-1)


def weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in module.state_dict().values()]


# Each builds everything it needs from fixed seeds and returns (weights before, weights after); None
# before where the trained object is built inside the call.
def run_pretrain():
    model = tiny_diffusion()
    before = weights(model)
    pretrain(model, corpus(), steps=3, batch_size=8, lr=1e-2, weight_decay=0.0, warmup=1)
    return before, weights(model)


def run_finetuner(finetune, model=None, **settings):
    model = tiny_diffusion() if model is None else model
    tuned, _ = finetune(model, token0, alpha=0.5, iterations=2, batch_size=4, lr=1e-2, grad_clip=1.0,
                        sampler=3, seed=0, **settings)
    return weights(model), weights(tuned)


def run_train_conditional():
    model = make_conditional(tiny_diffusion(), [2])
    before = weights(model)
    cond = torch.randint(0, 2, (64, 1), generator=torch.Generator().manual_seed(1))
    train_conditional(model, corpus(), cond, steps=3, batch_size=8, lr=1e-2, progress=False)
    return before, weights(model)


def run_classifier():
    torch.manual_seed(0)
    clf = EnsembleClassifier(L, V, 2, num_members=2, hidden_dims=(8,))
    before = weights(clf)
    tokens = corpus()
    clf.fit(one_hot(tokens, V), (tokens[:, 0] == 0).long(), steps=3, lr=1e-2)
    return before, weights(clf)


def run_finetune_ctrl():
    pre = tiny_diffusion()
    factors = [Factor("A", (0.5,), ("low", "high"))]
    torch.manual_seed(1)
    reward = ConditionLogProb(factors, {"A": EnsembleClassifier(L, V, 2, num_members=2, hidden_dims=(8,))})
    sampler = ConditionSampler(factors, conditions=torch.tensor([[1]]), drop_prob=0.0)
    model, _ = finetune_ctrl(pre, reward, sampler, partial(finetune_backprop, iterations=2, batch_size=4,
                                                           sampler=3, lr=1e-2, grad_clip=1.0,
                                                           backprop_steps=2, tau=1.0, hard=True))
    return weights(make_conditional(pre, [2])), weights(model)


def run_gradient_ascent():
    start = torch.ones(4, L, dtype=torch.long)
    return [start], [gradient_ascent(token0, start, V, steps=20, lr=0.5)]


def run_reward_model(factory):
    return None, weights(factory().fit(dataset(), seed=0))


def run_value_network():
    net, info = fit_value_network(tiny_diffusion(), token0, rollouts=8, steps=3, batch_size=8, lr=1e-2,
                                  dim=8, depth=1, sampler=3, generator=torch.Generator().manual_seed(0))
    return None, [*weights(net), torch.tensor(info["value_loss"])]


def run_gradient_guidance():
    res = gradient_guidance(tiny_diffusion(), token0, 8, alpha=0.5, scale=1.0, sampler=3,
                            generator=torch.Generator().manual_seed(0))
    return None, [res.designs]


def ensemble():
    return DeepEnsemble(num_members=2, hidden_dims=(8,), epochs=3, batch_size=16)


CASES = {
    "pretrain": run_pretrain,
    "finetune_backprop": partial(run_finetuner, finetune_backprop, backprop_steps=2, tau=1.0, hard=True),
    "finetune_vidd": partial(run_finetuner, finetune_vidd, states_per_trajectory=2),
    "finetune_ppo": partial(run_finetuner, finetune_ppo, epochs=2, clip=0.2),
    "finetune_rwr": partial(run_finetuner, finetune_rwr, epochs=2),
    "train_conditional": run_train_conditional,
    "EnsembleClassifier.fit": run_classifier,
    "finetune_ctrl": run_finetune_ctrl,
    "gradient_ascent": run_gradient_ascent,
    "DeepEnsemble.fit": partial(run_reward_model, ensemble),
    "OneHotGP.fit": partial(run_reward_model, lambda: OneHotGP(maxiter=5)),
    "CategoricalGP.fit": partial(run_reward_model, lambda: CategoricalGP(maxiter=5)),
    "VariationalGP.fit": partial(run_reward_model, lambda: VariationalGP(num_inducing=8, batch_size=16,
                                                                         epochs=1)),
    "ExtrapolationCalibrated.fit": partial(run_reward_model, lambda: ExtrapolationCalibrated(ensemble())),
    "FeatureBonus.fit": partial(run_reward_model, lambda: FeatureBonus(ensemble(), lam=0.1)),
    "fit_value_network": run_value_network,
    "gradient_guidance": run_gradient_guidance,
}


@pytest.mark.parametrize("name", CASES)
def test_trains_under_no_grad_as_with_gradients(name):
    with torch.no_grad():
        before, trained = CASES[name]()
        assert not torch.is_grad_enabled()  # the caller's mode is left as it was
    _, reference = CASES[name]()
    if before is not None:
        assert any(not torch.equal(a, b) for a, b in zip(before, trained, strict=True)), "nothing trained"
    assert len(trained) == len(reference)
    for a, b in zip(trained, reference, strict=True):
        torch.testing.assert_close(a, b)



# The two that train a network of their own make it outside inference mode, so they run there too.
BUILDS_ITS_OWN = {"fit_value_network", "gradient_guidance"}


@pytest.mark.parametrize("name", sorted(set(CASES) - BUILDS_ITS_OWN))
def test_training_under_inference_mode_is_refused_by_name(name):
    with torch.inference_mode(), pytest.raises(RuntimeError, match=r"trains weights.*inference_mode\(\)"):
        CASES[name]()


@pytest.mark.parametrize("name", sorted(BUILDS_ITS_OWN))
def test_own_networks_train_under_inference_mode(name):
    with torch.inference_mode():
        _, got = CASES[name]()
    _, want = CASES[name]()
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
