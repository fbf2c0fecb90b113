"""Fine-tuning diffusion models towards p*(x) ∝ p_pre(x)·exp(r(x)/α), each with one signature
``(pretrained, reward, *, alpha, <settings>, seed, progress) -> (model, history)``; how far a result is
from that target: :func:`target_gap`."""

from mbo.finetune.backprop import finetune_backprop
from mbo.finetune.objective import log_partition, mixture_log_partition, target_gap
from mbo.finetune.ppo import finetune_ppo
from mbo.finetune.rwr import finetune_rwr
from mbo.finetune.vidd import finetune_vidd, soft_optimal_tokens

__all__ = ["finetune_backprop", "finetune_ppo", "finetune_rwr", "finetune_vidd", "log_partition",
           "mixture_log_partition", "soft_optimal_tokens", "target_gap"]
