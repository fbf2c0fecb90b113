"""Settings the benchmarks share.

TFBind8 has its own defaults since ``mbo/conf/task_defaults/tfbind8.yaml`` (a CNN ensemble, c = 0,
α = 0.01, 4,096 candidates). The benchmarks below compared methods and conservatism on the general
ones, which TFBind8 used before; their TFBind8 settings start from :data:`TFBIND8_GENERAL` so a
committed command still reproduces its table, and ``--override`` still goes on top.

Ehrlich's own choices (``mbo/conf/task_defaults/ehrlich.yaml``) came later too: the dilated CNN and
min-p at 1e-2. :data:`EHRLICH_GENERAL` is Ehrlich as the inference-time, fine-tuning, constraint and
offline benchmarks ran it (the 9-position CNN, min-p 1e-3). Since then the task also steers its
designs by gradient guidance (``method: gradient``); those benchmarks name their method or fine-tuner
themselves.
"""

TFBIND8_GENERAL = ["reward_model=ensemble", "conservative.c=auto", "finetune.alpha=0.03", "oversample=8"]
EHRLICH_GENERAL = ["task=ehrlich", "reward_model=conv_ensemble", "diffusion.min_prob=0.001"]
