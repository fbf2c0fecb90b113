"""Settings the benchmarks share.

TFBind8 has its own defaults since ``mbo/conf/task_defaults/tfbind8.yaml`` (a CNN ensemble, c = 0,
α = 0.01, 4,096 candidates). The benchmarks below compared methods and conservatism on the general
ones, which TFBind8 used before; their TFBind8 settings start from :data:`TFBIND8_GENERAL` so a
committed command still reproduces its table, and ``--override`` still goes on top.
"""

TFBIND8_GENERAL = ["reward_model=ensemble", "conservative.c=auto", "finetune.alpha=0.03", "oversample=8"]
