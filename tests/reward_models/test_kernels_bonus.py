"""The one-hot Hamming kernel equals BoTorch's CategoricalKernel; the feature bonus behaves."""

import torch
from botorch.models.kernels.categorical import CategoricalKernel
from torch import nn

from mbo.data.alphabet import one_hot
from reward_models import DeepEnsemble, FeatureBonus, OneHotHammingKernel

from .conftest import L, V, make_dataset


def test_hamming_kernel_matches_botorch_categorical_kernel():
    tokens = torch.randint(V, (7, L), generator=torch.Generator().manual_seed(0)).double()
    x = one_hot(tokens.long(), V, torch.float64).flatten(1)
    ours = OneHotHammingKernel(L, V).double()
    ref = CategoricalKernel(ard_num_dims=L).double()
    ls = torch.linspace(0.5, 2.0, L, dtype=torch.float64).unsqueeze(0)
    ours.lengthscale, ref.lengthscale = ls, ls
    torch.testing.assert_close(ours(x, x).to_dense(), ref(tokens, tokens).to_dense())
    torch.testing.assert_close(ours(x, x, diag=True), torch.ones(7, dtype=torch.float64))


class _LinearNet(nn.Module):
    """Identity features on the flattened one-hot, zero mean: the bonus is then a plain ridge one."""

    def features(self, x):
        return x.flatten(1)

    def forward(self, x):
        return torch.zeros(x.shape[0])


def test_bonus_matches_closed_form_and_grows_off_data():
    ds = make_dataset(n=40)
    fb = FeatureBonus(_LinearNet(), lam=0.5, device="cpu").fit(ds)
    phi = ds.one_hot().flatten(1).double()
    a_inv = torch.linalg.inv(phi.T @ phi + 0.5 * torch.eye(L * V, dtype=torch.float64))
    x = ds.one_hot()[:3]
    expected = ((x.flatten(1).double() @ a_inv) * x.flatten(1).double()).sum(-1).sqrt()
    torch.testing.assert_close(fb.bonus(x).double(), expected, atol=1e-5, rtol=1e-5)
    # A uniform soft input is in the span; a scaled-up one-hot leaves the data's feature scale.
    assert (fb.bonus(3 * x) > fb.bonus(x)).all()


def test_bonus_on_rare_tokens_is_larger():
    """Training data never uses token 3 at position 0: sequences that do get a larger bonus."""
    ds = make_dataset(n=64)
    keep = ds.tokens[:, 0] != 3
    train = ds.subset(keep)
    fb = FeatureBonus(_LinearNet(), lam=0.1, device="cpu").fit(train)
    seen = train.one_hot()[:10]
    unseen = seen.clone()
    unseen[:, 0] = torch.nn.functional.one_hot(torch.tensor(3), V).float()
    assert (fb.bonus(unseen) > fb.bonus(seen)).all()


def test_calibrate_sets_scale():
    ds = make_dataset(n=48)
    fb = FeatureBonus(DeepEnsemble(num_members=2, hidden_dims=(8,), epochs=3, batch_size=16),
                      device="cpu").fit(ds.subset(slice(0, 32)))
    fb.calibrate(ds.subset(slice(32, 48)))
    mean, std = fb.mean_std(ds.one_hot()[32:])
    z2 = ((ds.labels[32:] - mean) / std).pow(2).mean()
    torch.testing.assert_close(z2.detach(), torch.tensor(1.0), atol=1e-4, rtol=1e-4)
