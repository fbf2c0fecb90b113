"""Conservative (pessimistic) and optimistic rewards over any reward model with uncertainty."""

from conservative.rewards import (
    ConservativeReward,
    OptimisticReward,
    PessimisticReward,
    ScaledReward,
    label_scale,
)

__all__ = ["ConservativeReward", "OptimisticReward", "PessimisticReward", "ScaledReward", "label_scale"]
