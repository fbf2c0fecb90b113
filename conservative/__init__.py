"""Conservative (pessimistic) and optimistic rewards over any reward model with uncertainty."""

from conservative.auto import choose_c
from conservative.rewards import (
    ConservativeReward,
    OptimisticReward,
    PessimisticReward,
    ScaledReward,
    label_scale,
)

__all__ = ["ConservativeReward", "OptimisticReward", "PessimisticReward", "ScaledReward", "choose_c",
           "label_scale"]
