"""Conservative (pessimistic) and optimistic rewards over any reward model with uncertainty."""

from conservative.auto import choose_c_alpha, probe_rows
from conservative.rewards import (
    ConservativeReward,
    OptimisticReward,
    PessimisticReward,
    ScaledReward,
    label_scale,
)

__all__ = ["ConservativeReward", "OptimisticReward", "PessimisticReward", "ScaledReward", "choose_c_alpha",
           "label_scale", "probe_rows"]
