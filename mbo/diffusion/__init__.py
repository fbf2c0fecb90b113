"""Diffusion models over designs: masked discrete diffusion for sequences, denoiser networks,
pretraining, loading checkpoints (saving: :mod:`mbo.checkpoint`). Rewards enter only as callables
(no import of reward_models/)."""

from mbo.diffusion.checkpoint import load_masked_diffusion
from mbo.diffusion.denoiser import ConditionalDenoiser, TransformerDenoiser
from mbo.diffusion.masked import (
    DEFAULT_SAMPLING_STEPS,
    Guidance,
    MaskedDiffusion,
    StepOutput,
    Trajectory,
)
from mbo.diffusion.pretrain import pretrain
from mbo.diffusion.samplers import FirstHittingSampler, GridSampler, Sampler, get_sampler
from mbo.diffusion.schedule import CosineSchedule, LinearSchedule, Schedule, get_schedule

__all__ = [
    "DEFAULT_SAMPLING_STEPS",
    "ConditionalDenoiser",
    "CosineSchedule",
    "FirstHittingSampler",
    "GridSampler",
    "Guidance",
    "LinearSchedule",
    "MaskedDiffusion",
    "Sampler",
    "Schedule",
    "StepOutput",
    "Trajectory",
    "TransformerDenoiser",
    "get_sampler",
    "get_schedule",
    "load_masked_diffusion",
    "pretrain",
]
