"""Diffusion models over designs: masked discrete diffusion for sequences, denoiser networks,
pretraining, loading checkpoints (saving: :mod:`mbo.checkpoint`). Rewards enter only as callables
(no import of reward_models/)."""

from mbo.diffusion.checkpoint import load_masked_diffusion
from mbo.diffusion.denoiser import TransformerDenoiser
from mbo.diffusion.masked import (
    DEFAULT_SAMPLING_STEPS,
    MaskedDiffusion,
    StepOutput,
    Trajectory,
)
from mbo.diffusion.pretrain import pretrain

__all__ = [
    "DEFAULT_SAMPLING_STEPS",
    "MaskedDiffusion",
    "StepOutput",
    "Trajectory",
    "TransformerDenoiser",
    "load_masked_diffusion",
    "pretrain",
]
