"""CTRL: conditional control of a pretrained diffusion model from offline labels (arXiv 2406.12120).

Target for a condition c: p(x | c) ∝ p_pre(x) · p̂(c | x)^γ, with p̂ a classifier on clean sequences.
"""

from mbo.ctrl.classifier import EnsembleClassifier, calibration
from mbo.ctrl.conditional import conditional_from_scratch, make_conditional
from mbo.ctrl.conditions import (
    ConditionSampler,
    Factor,
    condition_name,
    encode_condition,
    parse_condition,
    satisfies,
)
from mbo.ctrl.finetune import ConditionLogProb, ctrl_objective, finetune_ctrl, nfe_backprop, nfe_vidd
from mbo.ctrl.sampling import ranked_draws, rejection_select, sample_cfg, sample_classifier_guided
from mbo.ctrl.train import train_conditional
from mbo.diffusion.denoiser import ConditionalDenoiser

__all__ = [
    "ConditionLogProb",
    "ConditionSampler",
    "ConditionalDenoiser",
    "EnsembleClassifier",
    "Factor",
    "calibration",
    "condition_name",
    "conditional_from_scratch",
    "ctrl_objective",
    "encode_condition",
    "finetune_ctrl",
    "make_conditional",
    "nfe_backprop",
    "nfe_vidd",
    "parse_condition",
    "ranked_draws",
    "rejection_select",
    "sample_cfg",
    "sample_classifier_guided",
    "satisfies",
    "train_conditional",
]
