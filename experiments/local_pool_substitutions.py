"""How many substitutions a SEIKO LocalPool candidate makes, and how many of them the oracle scores
finite (C20: the conserved region kept) and above the parent: a FLEXS problem's prior, constrained
as in ``bench_flexs``, completes its first start re-masked at rates 0.035, 0.1 and 0.3, 500
candidates, seed 0.

    .venv/bin/python experiments/local_pool_substitutions.py aav_560_588
"""

import argparse
import sys

import torch
from bench_flexs import constrained_prior, problem_task, seiko_config

from mbo.active.seiko import LocalPool

problem = sys.argv[1] if len(sys.argv) > 1 else "aav_560_588"
args = argparse.Namespace(oracle_workers=1, task_override=[], override=[])
torch.set_num_threads(1)
task = problem_task(problem, args)
cfg = seiko_config(args)
prior = constrained_prior(task, cfg, progress=False)  # as bench_flexs's SEIKO runs
parent = task.offline_dataset().tokens[:1]
generator = torch.Generator().manual_seed(0)
parent_value = float(task.oracle(parent))
for remask in (0.035, 0.1, 0.3):
    children = LocalPool(fraction=1.0, parents=1, remask=remask).draw(prior, parent, 500, None, generator)
    subs = (children != parent).sum(1).float()
    values = task.oracle(children)
    finite = values[torch.isfinite(values)]
    scores = (f"feasible children mean {finite.mean():.3f}, max {finite.max():.3f}, "
              f"{(finite > parent_value).float().sum() / len(values):.1%} above the parent" if len(finite)
              else "none feasible")
    print(f"{problem} remask {remask}: {subs.mean():.2f} substitutions a candidate, "
          f"{(subs == 0).float().mean():.1%} equal to the parent, {len(finite) / len(values):.1%} feasible; "
          f"parent {parent_value:.3f}, {scores}")
