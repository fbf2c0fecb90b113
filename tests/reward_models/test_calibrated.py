import torch

from mbo.data import DNA, SequenceDataset
from reward_models import DeepEnsemble, ExtrapolationCalibrated, load_reward_model


def data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (n, 6), generator=g)
    y = (x == 0).float().sum(-1) + 0.1 * torch.randn(n, generator=g)
    return SequenceDataset(x, DNA, y)


def test_calibration_inflates_the_std_where_the_probe_extrapolated(tmp_path):
    d = data()
    base = DeepEnsemble(num_members=3, hidden_dims=[16], epochs=15)
    cal = ExtrapolationCalibrated(base).fit(d, seed=0)
    assert cal.calibration["k"] >= 1.0 and cal.calibration["held_out"] > 0
    x = d.one_hot()
    mean, std = cal.mean_std(x)
    raw_mean, raw_std = cal.model.mean_std(x)
    torch.testing.assert_close(mean, raw_mean)  # the ranking is the model's
    assert bool((std >= raw_std - 1e-6).all())
    post = cal.posterior(x.flatten(1)[:5].unsqueeze(1))
    torch.testing.assert_close(post.mean.squeeze().float(), mean[:5].detach())
    path = cal.save(tmp_path / "cal.safetensors")
    again = load_reward_model(path)
    torch.testing.assert_close(again.mean_std(x)[1], std.detach())


def test_conformal_scale_makes_one_sigma_cover_its_share():
    from reward_models.calibrated import ONE_SIGMA, _conformal_scale

    g = torch.Generator().manual_seed(0)
    err = torch.randn(20000, generator=g, dtype=torch.float64).abs() * 3.0  # errors 3× the stated std
    epi, noise = torch.full_like(err, 0.5), torch.full_like(err, 0.5)
    t = _conformal_scale(err, epi, noise)
    covered = (err <= (t**2 * epi + noise).sqrt()).double().mean()
    assert abs(float(covered) - ONE_SIGMA) < 0.005
    assert _conformal_scale(err / 100, epi, noise) == 1.0  # never shrinks an honest std
