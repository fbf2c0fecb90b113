"""Every reward model: shapes, seed determinism, gradients through mean_std, BoTorch acquisition,
and checkpoint round trips — on tiny synthetic data."""

import re

import pytest
import torch
from botorch.acquisition.logei import qLogExpectedImprovement
from botorch.acquisition.monte_carlo import qUpperConfidenceBound
from botorch.models.ensemble import EnsembleModel
from botorch.models.model import Model
from botorch.optim import optimize_acqf_discrete

from mbo import checkpoint as mbo_checkpoint
from mbo.checkpoint import load_checkpoint, save_checkpoint
from reward_models import (
    BootstrapEnsemble,
    CategoricalGP,
    CheckpointError,
    DeepEnsemble,
    FeatureBonus,
    OneHotGP,
    VariationalGP,
    load_reward_model,
)

from .conftest import L, V

FACTORIES = {
    "DeepEnsemble": lambda: DeepEnsemble(num_members=3, hidden_dims=(16,), epochs=30, batch_size=16),
    "BootstrapEnsemble": lambda: BootstrapEnsemble(num_members=3, hidden_dims=(16,), epochs=30,
                                                   batch_size=16),
    "CNNEnsemble": lambda: BootstrapEnsemble(num_members=3, conv_channels=(8,), kernel_size=3,
                                             hidden_dims=(16,), epochs=30, batch_size=16),
    "DilatedCNNEnsemble": lambda: DeepEnsemble(num_members=2, conv_channels=(8, 8), kernel_size=3,
                                               dilations=(1, 2), hidden_dims=(16,), epochs=30,
                                               batch_size=16),
    "OneHotGP": lambda: OneHotGP(maxiter=15),
    "CategoricalGP": lambda: CategoricalGP(maxiter=15),
    "VariationalGP": lambda: VariationalGP(num_inducing=12, batch_size=16, epochs=3),
    "FeatureBonus": lambda: FeatureBonus(DeepEnsemble(num_members=2, hidden_dims=(16,), epochs=5,
                                                      batch_size=16), lam=0.1),
}


@pytest.fixture(scope="module")
def fitted():
    """One fitted instance of each model (fitting once keeps the file fast)."""
    from .conftest import make_dataset

    ds = make_dataset()
    return {name: make().fit(ds, seed=0) for name, make in FACTORIES.items()}


@pytest.mark.parametrize("name", FACTORIES)
def test_is_botorch_model_with_shapes(fitted, name, choices):
    model = fitted[name]
    assert isinstance(model, Model) and model.num_outputs == 1
    x = choices.reshape(-1, L, V)
    mean, std = model.mean_std(x)
    assert mean.shape == std.shape == (20,)
    assert torch.isfinite(mean).all() and (std > 0).all()
    post = model.posterior(choices.reshape(4, 5, L * V))
    assert post.mean.shape == (4, 5, 1)
    # posterior and mean_std agree on the mean (q=1 batches).
    post1 = model.posterior(choices.unsqueeze(1))
    torch.testing.assert_close(post1.mean.reshape(-1).float(), mean.float(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", FACTORIES)
def test_gradients_flow_through_soft_onehot(fitted, name, soft_onehot):
    mean, std = fitted[name].mean_std(soft_onehot)
    (mean.sum() + std.sum()).backward()
    assert soft_onehot.grad is not None
    assert torch.isfinite(soft_onehot.grad).all() and soft_onehot.grad.abs().sum() > 0


@pytest.mark.parametrize("name", FACTORIES)
def test_same_seed_same_model(fitted, dataset, name, choices):
    x = choices.reshape(-1, L, V)
    a = fitted[name].mean_std(x)
    b = FACTORIES[name]().fit(dataset, seed=0).mean_std(x)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["DeepEnsemble", "BootstrapEnsemble"])
def test_different_seed_different_ensemble(dataset, name, choices):
    x = choices.reshape(-1, L, V)
    a = FACTORIES[name]().fit(dataset, seed=0).mean_std(x)[0]
    b = FACTORIES[name]().fit(dataset, seed=1).mean_std(x)[0]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("acq", ["qLogEI", "qUCB"])
def test_optimize_acqf_discrete_runs(fitted, name, acq, choices, dataset):
    model = fitted[name]
    if acq == "qLogEI":
        acqf = qLogExpectedImprovement(model, best_f=float(dataset.labels.max()))
    else:
        acqf = qUpperConfidenceBound(model, beta=2.0)
    cand, values = optimize_acqf_discrete(acqf, q=2, choices=choices)
    assert cand.shape == (2, L * V) and torch.isfinite(values).all()


@pytest.mark.parametrize("name", ["DeepEnsemble", "BootstrapEnsemble"])
def test_ensemble_members(fitted, name, choices):
    model = fitted[name]
    assert isinstance(model, EnsembleModel)
    x = choices.reshape(-1, L, V)
    members = model.member_predictions(x)
    assert members.shape == (3, 20)
    mean, std = model.mean_std(x)
    torch.testing.assert_close(members.mean(0), mean)
    torch.testing.assert_close(members.std(0), std)
    # BoTorch's ensemble posterior sees the same members: same mean and variance.
    post = model.posterior(choices.unsqueeze(1))
    torch.testing.assert_close(post.variance.reshape(-1), std**2, atol=1e-5, rtol=1e-4)


def test_ensemble_learns_signal(fitted, dataset):
    mean, _ = fitted["DeepEnsemble"].mean_std(dataset.one_hot())
    corr = torch.corrcoef(torch.stack([mean.detach(), dataset.labels]))[0, 1]
    assert corr > 0.8


def test_min_steps_trains_a_model_of_few_labels(dataset):
    """48 labels in batches of 128 are one step an epoch: 20 epochs leave the model near its
    initialization; the floor of 300 steps fits the signal."""
    def corr(min_steps):
        model = DeepEnsemble(num_members=2, hidden_dims=(16,), epochs=20, min_steps=min_steps).fit(dataset)
        mean, _ = model.mean_std(dataset.one_hot())
        return float(torch.corrcoef(torch.stack([mean.detach(), dataset.labels]))[0, 1])

    assert corr(300) > 0.9 > corr(0) + 0.1
    with pytest.raises(ValueError, match="min_steps"):
        DeepEnsemble(min_steps=-1)


def test_observation_noise_widens_std(fitted, choices):
    x = choices.reshape(-1, L, V)
    for name in ("BootstrapEnsemble", "OneHotGP", "VariationalGP"):
        _, epistemic = fitted[name].mean_std(x)
        _, total = fitted[name].mean_std(x, observation_noise=True)
        assert (total >= epistemic - 1e-6).all(), name


@pytest.mark.parametrize("name", FACTORIES)
def test_checkpoint_round_trip(fitted, name, tmp_path, choices):
    model = fitted[name]
    path = model.save(tmp_path / "m.safetensors")
    with pytest.raises(FileExistsError):
        model.save(path)
    loaded = load_reward_model(path, device="cpu")
    assert type(loaded) is type(model) and loaded.config == model.config
    x = choices.reshape(-1, L, V)
    with torch.no_grad():
        torch.testing.assert_close(loaded.mean_std(x), model.mean_std(x), atol=1e-5, rtol=1e-5)


def test_checkpoint_error_is_the_shared_one():
    assert CheckpointError is mbo_checkpoint.CheckpointError


def test_checkpoint_errors(fitted, tmp_path):
    path = fitted["DeepEnsemble"].save(tmp_path / "ens.safetensors")
    with pytest.raises(CheckpointError, match=r"ens\.safetensors holds a DeepEnsemble, not a OneHotGP"):
        OneHotGP.load(path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"bad\.safetensors is corrupt"):
        load_reward_model(bad)
    with pytest.raises(CheckpointError, match=r"missing\.safetensors does not exist"):
        load_reward_model(tmp_path / "missing.safetensors")

    state, config = load_checkpoint(path)
    unknown = save_checkpoint(tmp_path / "unknown.safetensors", state, config, kind="Oracle")
    with pytest.raises(CheckpointError, match=r"unknown\.safetensors: unknown reward model kind 'Oracle'"):
        load_reward_model(unknown)
    wrong_init = save_checkpoint(tmp_path / "init.safetensors", state, {**config, "init": {"bogus": 1}},
                                 kind="DeepEnsemble")
    with pytest.raises(CheckpointError, match=r"init\.safetensors: config does not build a DeepEnsemble"):
        load_reward_model(wrong_init)
    # A count of 0, a shape given as text: the file is wrong, and the error says which file.
    for name, bad in (("members", {**config, "init": {**config["init"], "num_members": 0}}),
                      ("shape", {**config, "fitted": {**config["fitted"], "length": "8"}})):
        p = save_checkpoint(tmp_path / f"{name}.safetensors", state, bad, kind="DeepEnsemble")
        with pytest.raises(CheckpointError, match=rf"{name}\.safetensors: config does not build a Deep"):
            load_reward_model(p)
    del state[next(iter(state))]
    short = save_checkpoint(tmp_path / "short.safetensors", state, config, kind="DeepEnsemble")
    with pytest.raises(CheckpointError, match=r"short\.safetensors does not fit .*missing weights"):
        load_reward_model(short)


def test_input_errors(fitted, dataset):
    model = fitted["OneHotGP"]
    with pytest.raises(ValueError, match=r"fitted on \(L, V\)"):
        model.mean_std(torch.zeros(3, L + 1, V))
    with pytest.raises(ValueError, match="L\\*V"):
        model.posterior(torch.zeros(3, 1, 7))
    with pytest.raises(RuntimeError, match="not fitted"):
        DeepEnsemble().mean_std(torch.zeros(3, L, V))
    unlabeled = type(dataset)(dataset.tokens, dataset.alphabet)
    with pytest.raises(ValueError, match="no labels"):
        DeepEnsemble().fit(unlabeled)


@pytest.mark.parametrize("name", FACTORIES)
def test_float64_input_gives_float64_output(fitted, name, choices):
    # BoTorch's optimizers work in float64; the ensembles' members compute in float32 regardless.
    model = fitted[name]
    mean, std = model.mean_std(choices.reshape(-1, L, V).double())
    assert mean.dtype == std.dtype == torch.float64
    assert model.posterior(choices.double().unsqueeze(1)).mean.dtype == torch.float64


@pytest.mark.parametrize(("labels", "problem"), [(torch.full((48,), 2.5), "all 48 labels are equal (2.5)"),
                                                 (torch.linspace(0, 1e37, 48), "labels reach 1e+37")])
def test_unlearnable_labels_are_refused(dataset, labels, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        DeepEnsemble().fit(type(dataset)(dataset.tokens, dataset.alphabet, labels))


@pytest.mark.parametrize(("build", "problem"), [
    (lambda: DeepEnsemble(batch_size=0), "DeepEnsemble: batch_size must be an integer >= 1, got 0"),
    (lambda: DeepEnsemble(hidden_dims=[64, 0]),
     r"DeepEnsemble: hidden_dims must be integers >= 1, got \[64, 0\]"),
    (lambda: DeepEnsemble(epochs=2.5), "DeepEnsemble: epochs must be an integer >= 1, got 2.5"),
    (lambda: DeepEnsemble(lr=-1), "DeepEnsemble: lr must be a finite number > 0, got -1"),
    (lambda: DeepEnsemble(weight_decay=float("nan")),
     "DeepEnsemble: weight_decay must be a finite number >= 0, got nan"),
    (lambda: DeepEnsemble(conv_channels=[8], kernel_size=0),
     "DeepEnsemble: kernel_size must be an integer >= 1"),
    (lambda: VariationalGP(batch_size=0), "VariationalGP: batch_size must be an integer >= 1, got 0"),
    (lambda: OneHotGP(max_train=1), "OneHotGP: max_train must be an integer >= 2, got 1"),
])
def test_training_settings_that_cannot_work_are_refused_when_built(build, problem):
    with pytest.raises(ValueError, match=problem):
        build()


@pytest.mark.parametrize("name", FACTORIES)
def test_zero_rows_give_empty_predictions(fitted, name, choices):
    mean, std = fitted[name].mean_std(choices[:0].reshape(0, L, V))
    assert mean.shape == std.shape == (0,)
    assert fitted[name].posterior(choices[:0]).mean.shape == (0, 1)


@pytest.mark.parametrize("name", ["OneHotGP", "CategoricalGP", "VariationalGP"])
def test_gp_std_follows_labels_of_any_scale(dataset, name, choices):
    # GPyTorch's posterior.variance floors at 1e-10 in label units: for labels in units of 1e-9 every
    # std was 1e-5, 10^4 times the labels' spread, and a conservative reward nothing but its penalty.
    x = choices.reshape(-1, L, V)
    unit = FACTORIES[name]().fit(dataset, seed=0).mean_std(x)[1]
    tiny = type(dataset)(dataset.tokens, dataset.alphabet, dataset.labels * 1e-9)
    std = FACTORIES[name]().fit(tiny, seed=0).mean_std(x)[1]
    torch.testing.assert_close(std / 1e-9, unit, rtol=0.05, atol=0.0)


@pytest.mark.parametrize("name", ["OneHotGP", "CategoricalGP", "VariationalGP"])
@pytest.mark.parametrize("loaded", [False, True], ids=["fitted", "loaded"])
def test_gp_backprops_through_predictions_again_and_again(dataset, name, loaded, tmp_path):
    # Reward backprop differentiates a new design's prediction every iteration. The variational GP
    # cached K(Z, Z)'s Cholesky factor with the first input's graph, so the second backward failed.
    model = FACTORIES[name]().fit(dataset, seed=0)
    if loaded:
        model = load_reward_model(model.save(tmp_path / "gp.safetensors"), device="cpu")
    logits = torch.randn(6, L, V, generator=torch.Generator().manual_seed(3), requires_grad=True)
    grads = []
    for _ in range(3):
        mean, std = model.mean_std(torch.softmax(logits, dim=-1))
        (mean.sum() + std.sum()).backward(inputs=[logits])
        grads.append(logits.grad.clone())
        logits.grad = None
    # The same input each time: the same gradient (no stale graph from an earlier call in it).
    torch.testing.assert_close(grads[1], grads[0])
    torch.testing.assert_close(grads[2], grads[0])
    assert all(not p.requires_grad for p in model.parameters())
