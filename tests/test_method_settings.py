"""The one table of what method and fine-tuner settings must be (mbo.method_settings)."""

import importlib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import mbo.conf
from mbo.method_settings import (
    CHOICES,
    COUNTS,
    COUNTS_FROM_ZERO,
    INTERVALS,
    NULLABLE_COUNTS,
    POSITIVE,
    check_method_settings,
)

CHECKED = COUNTS | NULLABLE_COUNTS | COUNTS_FROM_ZERO | POSITIVE | set(INTERVALS) | set(CHOICES) | {
    "alpha", "scale", "kl_budget", "value_dim", "hard", "weight_decay", "seed"}
GROUPS = ("method", "finetune", "ctrl/finetune")
OPTIONS = sorted(p for g in GROUPS for p in (Path(mbo.conf.__file__).parent / g).glob("*.yaml"))


@pytest.mark.parametrize("path", OPTIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_option_has_a_rule_for_each_setting_and_passes(path):
    settings = OmegaConf.to_container(OmegaConf.load(path))
    target = settings.pop("_target_")
    module, name = target.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name))
    settings.pop("_partial_")
    settings.pop("sampler", None)  # the diffusion group's, checked where the sampler is built
    assert set(settings) <= CHECKED, f"no rule for {set(settings) - CHECKED}: add one to mbo.method_settings"
    check_method_settings(name, settings)


def test_the_shipped_pretraining_settings_have_rules_and_pass():
    path = Path(mbo.conf.__file__).parent / "diffusion" / "masked.yaml"
    settings = OmegaConf.to_container(OmegaConf.load(path))
    assert set(settings["pretrain"]) <= CHECKED
    check_method_settings("pretrain", settings["pretrain"])


@pytest.mark.parametrize("where, key, value, problem", [
    ("svdd_pm", "candidates", 0, "candidates must be an integer >= 1"),
    ("svdd_pm", "candidates", 2.0, "candidates must be an integer >= 1"),
    ("svdd_pm", "candidates", True, "candidates must be an integer >= 1"),
    ("svdd_pm", "alpha", -0.1, "alpha must be a finite number >= 0"),
    ("svdd_pm", "alpha", float("nan"), "alpha must be a finite number >= 0"),
    ("smc", "alpha", 0, "alpha must be a finite number > 0"),
    ("finetune_ppo", "alpha", 0.0, "alpha must be a finite number > 0"),
    ("finetune_vidd", "iterations", -1, "iterations must be an integer >= 0"),
    ("finetune_backprop", "kl_budget", 0, "kl_budget must be null or a finite number > 0"),
    ("finetune_backprop", "hard", "yes", "hard must be true or false"),
    ("finetune_ppo", "clip", 0, "clip must be a finite number > 0"),
    # One sample: PPO's advantage r − mean r is 0 and RWR's normalized weight 1, so the reward is unseen.
    ("finetune_ppo", "batch_size", 1, "batch_size must be an integer >= 2"),
    ("finetune_rwr", "batch_size", 1, "batch_size must be an integer >= 2"),
    ("gradient_guidance", "scale", -1, "scale must be a finite number >= 0"),
    ("iterative_refinement", "remask_fraction", 1.5, r"remask_fraction must lie in \(0, 1\]"),
    ("smc", "ess_threshold", -0.1, r"ess_threshold must lie in \[0, 1\]"),
    ("svdd_mc", "value_dim", 6, "value_dim must be a positive multiple of 4"),
    ("pretrain", "lr", -1, "lr must be a finite number > 0"),
    ("pretrain", "ema", 1.0, r"ema must lie in \[0, 1\)"),
    # torch takes 1 and zeroes every activation in training: a denoiser that learns nothing.
    ("TransformerDenoiser", "dropout", 1.0, r"dropout must lie in \[0, 1\), got 1.0"),
    ("pretrain", "warmup", -5, "warmup must be an integer >= 0"),
    ("pretrain", "weight_decay", -0.1, "weight_decay must be a finite number >= 0"),
    ("pretrain", "masks", "all", "masks must be one of time, count"),
    ("finetune_vidd", "completion", "mode", "completion must be one of argmax, mean"),
    # Once a traceback at fit time (an MLP needs a hidden layer), or a GP that predicts one value.
    ("DeepEnsemble", "hidden_dims", [], "hidden_dims must hold one layer width at least"),
    ("CategoricalGP", "max_train", 1, "max_train must be an integer >= 2"),
])
def test_a_setting_that_cannot_work_is_named(where, key, value, problem):
    with pytest.raises(ValueError, match=f"^{where}: method.{problem}"):
        check_method_settings(where, {key: value}, prefix="method.")


def test_what_works_passes():
    check_method_settings("svdd_pm", {"candidates": 1, "alpha": 0, "_target_": "x", "sampler": None})
    check_method_settings("finetune_vidd", {"alpha": 0, "iterations": 0, "kl_budget": None})
    check_method_settings("smc", {"ess_threshold": 0.0, "alpha": 1e-3, "resampling": "multinomial"})
    check_method_settings("finetune_vidd", {"batch_size": 1})
    check_method_settings("finetune_ppo", {"batch_size": 2})
    check_method_settings("DeepEnsemble", {"hidden_dims": [8], "conv_channels": []})  # an MLP
    check_method_settings("classifier", {"hidden_dims": []})  # a linear classifier
    check_method_settings("CategoricalGP", {"max_train": None})
