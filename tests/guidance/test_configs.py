"""The ``method`` config group: one option per method, the only place the settings' defaults live."""

import importlib
import inspect

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mbo.config import compose_config
from tests.guidance import L, count_zero, gen, tiny_model

# Settings shrunk so each method runs in well under a second.
TINY = {"best_of_n": ["method.num_samples=2"], "svdd_pm": ["method.candidates=2"],
        "svdd_rollout": ["method.candidates=2"],
        "svdd_mc": ["method.candidates=2", "method.rollouts=8", "method.value_steps=2"],
        "smc": ["method.particles=2"], "gradient": [], "refinement": ["method.candidates=2"]}


@pytest.mark.parametrize("option", sorted(TINY))
def test_each_option_holds_every_setting_and_runs(option):
    cfg = compose_config("config", [f"method={option}"])
    settings = OmegaConf.to_container(cfg.method)
    target = settings.pop("_target_")
    assert target.startswith("mbo.guidance.") and settings.pop("_partial_") is True
    module, name = target.rsplit(".", 1)
    fn = getattr(importlib.import_module(module), name)
    required = {p.name for p in inspect.signature(fn).parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    assert set(settings) == required  # every setting, and only those without a Python default

    small = compose_config("config", [f"method={option}", *TINY[option]])
    res = instantiate(small.method)(tiny_model(sampler=3), count_zero, 2, generator=gen())
    assert res.designs.shape == (2, L) and res.reward_calls > 0
