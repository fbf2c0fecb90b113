import pytest
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
    t = _conformal_scale(err, epi, noise, 1e-24)
    covered = (err <= (t**2 * epi + noise).sqrt()).double().mean()
    assert abs(float(covered) - ONE_SIGMA) < 0.005
    assert _conformal_scale(err / 100, epi, noise, 1e-24) == 1.0  # never shrinks an honest std


def test_a_split_with_nothing_to_calibrate_on_is_refused_before_any_fit():
    base = DeepEnsemble(num_members=2, hidden_dims=[8], epochs=1)
    x = torch.randint(0, 4, (12, 4), generator=torch.Generator().manual_seed(0))
    # Binary labels, mostly 0: the median is 0, so the probe would get only 0s (it raised from inside
    # DeepEnsemble.fit, "all 8 labels are equal"); mostly 1: nothing lies above the median.
    for labels, held, distinct in (([0.0] * 8 + [1.0] * 4, 4, 1), ([0.0] * 4 + [1.0] * 8, 0, 2),
                                   ([0.0, 1.0], 1, 1)):
        d = SequenceDataset(x[:len(labels)], DNA, torch.tensor(labels))
        with pytest.raises(ValueError, match=rf"^ExtrapolationCalibrated: .* leaves {held} held-out rows and "
                                             rf"{distinct} distinct label"):
            ExtrapolationCalibrated(base).fit(d)
    low, high = ExtrapolationCalibrated(base).split(torch.arange(6.0))
    assert low.tolist() == [True] * 3 + [False] * 3 and high.tolist() == [False] * 3 + [True] * 3


def test_labels_of_1e30_keep_a_finite_std():
    # The calibrated variance was formed in float32: a std past ~1e19 squared to inf (std inf, and
    # with observation noise inf - inf = NaN; a conservative reward at c = 0 then 0 * inf = NaN).
    d = data(n=40)
    base = DeepEnsemble(num_members=2, hidden_dims=[8], epochs=2)
    big = SequenceDataset(d.tokens, DNA, d.labels * 1e30)
    x = d.one_hot()[:8]
    unit = ExtrapolationCalibrated(base).fit(d, seed=0)
    cal = ExtrapolationCalibrated(base).fit(big, seed=0)
    for noise in (False, True):
        std = cal.mean_std(x, observation_noise=noise)[1]
        assert std.dtype == torch.float32 and bool(torch.isfinite(std).all())
        expected = unit.mean_std(x, observation_noise=noise)[1]
        torch.testing.assert_close(std / 1e30, expected, rtol=0.02, atol=0)


def test_labels_of_1e_minus_9_calibrate_as_labels_of_1():
    # The (k, b) grid added an absolute 1e-12 to every variance: for labels in units of 1e-6 or less it
    # outweighed the model's own, another (k, b) won and the std was 0.93 (1e-6) of the unit fit's.
    d = data(n=40)
    base = DeepEnsemble(num_members=2, hidden_dims=[8], epochs=2)
    tiny = SequenceDataset(d.tokens, DNA, d.labels * 1e-9)
    x = d.one_hot()[:8]
    unit = ExtrapolationCalibrated(base).fit(d, seed=0)
    cal = ExtrapolationCalibrated(base).fit(tiny, seed=0)
    assert cal.calibration["k"] == pytest.approx(unit.calibration["k"], rel=1e-6)
    assert cal.calibration["b"] == pytest.approx(unit.calibration["b"], rel=1e-6)
    for noise in (False, True):
        expected = unit.mean_std(x, observation_noise=noise)[1]
        torch.testing.assert_close(cal.mean_std(x, observation_noise=noise)[1] / 1e-9, expected,
                                   rtol=0.02, atol=0)
