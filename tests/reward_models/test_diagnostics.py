"""Diagnostics: metric values on known cases and the reliability PNG."""

import math

import pytest
import torch

from reward_models.diagnostics import regression_metrics, reliability_curve, reliability_plot


def test_metrics_on_calibrated_gaussian():
    gen = torch.Generator().manual_seed(0)
    n = 20000
    mean = torch.randn(n, generator=gen)
    std = torch.rand(n, generator=gen) + 0.5
    y = mean + std * torch.randn(n, generator=gen)
    m = regression_metrics(mean, std, y)
    assert m["coverage_1sigma"] == pytest.approx(0.683, abs=0.02)
    assert m["coverage_2sigma"] == pytest.approx(0.954, abs=0.01)
    expected_nll = 0.5 * math.log(2 * math.pi) + 0.5 + torch.log(std).mean().item()
    assert m["nll"] == pytest.approx(expected_nll, abs=0.03)
    assert m["std_error_spearman"] > 0.1  # larger std, larger errors
    levels, observed = reliability_curve(mean, std, y)
    assert abs(observed - levels).max() < 0.03


def test_metrics_exact_values_and_constant_input():
    y = torch.tensor([1.0, 2.0, 3.0])
    m = regression_metrics(y.clone(), torch.ones(3), y)
    assert m["rmse"] == 0 and m["spearman"] == pytest.approx(1.0)
    assert math.isnan(m["std_error_spearman"])  # constant std: undefined, not a crash
    with pytest.raises(ValueError, match="must all be"):
        regression_metrics(y, torch.ones(2), y)


def test_reliability_plot_writes_png(tmp_path):
    gen = torch.Generator().manual_seed(0)
    mean, std = torch.randn(200, generator=gen), torch.ones(200)
    y = mean + torch.randn(200, generator=gen)
    path = reliability_plot({"a": (mean, std, y), "b": (mean, 0.5 * std, y)}, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileExistsError):
        reliability_plot({"a": (mean, std, y)}, path)
