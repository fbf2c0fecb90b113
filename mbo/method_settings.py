"""What the settings of every design method, fine-tuner, reward model and of pretraining must be, in
one table.

Each method of :mod:`mbo.guidance` and :mod:`mbo.finetune` checks its own settings on entry, and
``mbo-run`` and ``mbo-campaign`` check the same settings from the config before any data is read or
any model trained: a value that cannot work is then one line naming the setting, not a traceback after
minutes of pretraining and fitting. Settings are keyed by name, because a name means the same thing in
every method (``candidates`` is always a count, ``alpha`` always the temperature of p_pre·exp(r/α)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Integers >= 1.
COUNTS = frozenset({"num_samples", "candidates", "particles", "rounds", "rollouts", "value_steps",
                    "value_batch_size", "value_depth", "batch_size", "epochs", "states_per_trajectory",
                    "backprop_steps", "steps", "log_every", "members", "kernel_size", "num_inducing",
                    "maxiter"})
# Lists of integers >= 1 (layer widths).
COUNT_LISTS = frozenset({"hidden_dims", "conv_channels"})
# Lists that need one entry at least, except in the methods named: a reward ensemble's last hidden layer
# is its features (the MLP's, or the CNN's head), while a CTRL classifier without one is linear. No
# conv_channels is an MLP.
NONEMPTY_LISTS = {"hidden_dims": frozenset({"classifier"})}
# Integers >= 1, or null: every row (max_train), every step (selections).
NULLABLE_COUNTS = frozenset({"max_train", "selections"})
# Lows above 1 among those: a GP fitted on one point predicts the same for every design.
COUNT_LOWS = {"max_train": 2}
# Integers >= 0.
COUNTS_FROM_ZERO = frozenset({"iterations", "warmup"})
# Finite numbers > 0.
POSITIVE = frozenset({"lr", "value_lr", "grad_clip", "tau", "clip"})
# Values in an interval: (low, high, low included, high included). A dropout of 1 zeroes every
# activation in training (torch accepts it): the denoiser would learn nothing.
INTERVALS = {"remask_fraction": (0.0, 1.0, False, True), "ess_threshold": (0.0, 1.0, True, True),
             "ema": (0.0, 1.0, True, False), "dropout": (0.0, 1.0, True, False)}
CHOICES = {"resampling": ("systematic", "multinomial"), "completion": ("argmax", "mean"),
           "masks": ("time", "count"), "keep": ("best_scored", "final")}
# These weigh by exp(r/α) with no argmax limit (α = 0 would divide by zero); the others read α = 0 as
# argmax (SVDD, refinement) or as no KL leash (reward backprop, VIDD).
POSITIVE_ALPHA = frozenset({"smc", "gradient_guidance", "finetune_ppo", "finetune_rwr"})
# These learn from how a batch's samples compare with each other (PPO's advantage r − mean r, RWR's
# weights normalized over the batch): one sample has advantage 0 and weight 1, so the reward is never
# seen and a run of any length returns the prior (PPO) or a fit to its own samples (RWR).
BATCH_OF_TWO = frozenset({"finetune_ppo", "finetune_rwr"})


def check_method_settings(where: str, settings: Mapping[str, Any], prefix: str = "") -> None:
    """Raise ValueError if a setting of method ``where`` (its function's name) cannot work.

    Args:
        where: the method's function name, e.g. ``"svdd_pm"`` or ``"finetune_vidd"``.
        settings: its keyword settings; names this table does not know (``_target_``, ``sampler``)
            pass unchecked.
        prefix: how the app names the group in messages, e.g. ``"method."``.
    """
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if key == "batch_size" and where in BATCH_OF_TWO:
            check_count(value, name, where, low=2)
        elif key in COUNTS or key in COUNTS_FROM_ZERO:
            check_count(value, name, where, low=0 if key in COUNTS_FROM_ZERO else 1)
        elif key in COUNT_LISTS:
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
                raise ValueError(f"{where}: {name} must be integers >= 1, got {list(value)!r}")
            if not value and key in NONEMPTY_LISTS and where not in NONEMPTY_LISTS[key]:
                raise ValueError(f"{where}: {name} must hold one layer width at least, got []")
        elif key in NULLABLE_COUNTS and value is not None:
            check_count(value, name, where, low=COUNT_LOWS.get(key, 1))
        elif key == "alpha":
            zero_ok = where not in POSITIVE_ALPHA
            if not finite_number(value) or value < 0 or (value == 0 and not zero_ok):
                bound = ">= 0" if zero_ok else "> 0"
                raise ValueError(f"{where}: {name} must be a finite number {bound}, got {value!r}")
        elif key in POSITIVE and not (finite_number(value) and value > 0):
            raise ValueError(f"{where}: {name} must be a finite number > 0, got {value!r}")
        elif key == "weight_decay" and not (finite_number(value) and value >= 0):
            raise ValueError(f"{where}: {name} must be a finite number >= 0, got {value!r}")
        elif key == "seed" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{where}: {name} must be an integer, got {value!r}")
        elif key == "scale" and not (finite_number(value) and value >= 0):
            # A negative scale would steer towards lower reward.
            raise ValueError(f"{where}: {name} must be a finite number >= 0 (0: no guidance), got {value!r}")
        elif key == "kl_budget" and value is not None and not (finite_number(value) and value > 0):
            raise ValueError(f"{where}: {name} must be null or a finite number > 0 (nats), got {value!r}")
        elif key == "value_dim" and (isinstance(value, bool) or not isinstance(value, int)
                                     or value < 4 or value % 4):
            raise ValueError(f"{where}: {name} must be a positive multiple of 4, got {value!r}")
        elif key == "hard" and not isinstance(value, bool):
            raise ValueError(f"{where}: {name} must be true or false, got {value!r}")
        elif key in INTERVALS:
            lo, hi, with_lo, with_hi = INTERVALS[key]
            if (not finite_number(value) or not (lo <= value <= hi) or (value == lo and not with_lo)
                    or (value == hi and not with_hi)):
                raise ValueError(f"{where}: {name} must lie in {'[' if with_lo else '('}{lo:g}, {hi:g}"
                                 f"{']' if with_hi else ')'}, got {value!r}")
        elif key in CHOICES and value not in CHOICES[key]:
            raise ValueError(f"{where}: {name} must be one of {', '.join(CHOICES[key])}, got {value!r}")


def check_count(value, name: str, where: str, low: int = 1) -> int:
    """``value`` as an int >= ``low``, else a ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def finite_number(value) -> bool:
    """A real number (not a bool) that is neither infinite nor NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
