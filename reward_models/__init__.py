"""Reward models with uncertainty, each a BoTorch ``Model`` with a differentiable ``mean_std``.

See :mod:`reward_models.base` for the shared contract.
"""

from mbo.checkpoint import CheckpointError  # re-exported: the loaders here raise it
from reward_models.base import RewardModel, load_reward_model
from reward_models.calibrated import ExtrapolationCalibrated
from reward_models.ensemble import BootstrapEnsemble, DeepEnsemble
from reward_models.feature_bonus import FeatureBonus
from reward_models.gp import CategoricalGP, OneHotGP, VariationalGP
from reward_models.kernels import OneHotHammingKernel

MODEL_CLASSES = {cls.__name__: cls for cls in (DeepEnsemble, BootstrapEnsemble, OneHotGP,
                                                 CategoricalGP, VariationalGP, FeatureBonus,
                                                 ExtrapolationCalibrated)}

__all__ = ["MODEL_CLASSES", "BootstrapEnsemble", "CategoricalGP", "CheckpointError", "DeepEnsemble",
           "ExtrapolationCalibrated",
           "FeatureBonus", "OneHotGP", "OneHotHammingKernel", "RewardModel", "VariationalGP",
           "load_reward_model"]
