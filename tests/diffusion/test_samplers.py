"""Sampler construction (the samplers' draws are tested through MaskedDiffusion in test_masked.py)."""

import pytest

from mbo.diffusion.samplers import GridSampler, get_sampler


def test_grid_steps_must_be_a_positive_integer():
    assert GridSampler(3).steps == 3 and get_sampler(5).steps == 5
    for steps in (2.7, 2.0, True, "4"):
        with pytest.raises(TypeError, match="GridSampler: steps must be an integer"):
            GridSampler(steps)
    with pytest.raises(ValueError, match="GridSampler: steps must be >= 1, got 0"):
        GridSampler(0)
