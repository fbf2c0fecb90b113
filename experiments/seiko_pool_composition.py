"""What each round of a SEIKO FLEXS campaign chooses its plate from: ``bench_flexs.py flexs`` for one
problem with SEIKO only (seed 0), and a line per round from round 2 on that scores the round's pool
with the oracle (never seen by the method):

- ``best``: the best measured value before the round;
- ``pool``: the distinct, unmeasured candidates, of which ``local`` came from the local pool (and how
  many distinct designs the local pool drew);
- ``pool>best``: how many local and scratch candidates the oracle scores above ``best``, and the
  best of each;
- ``plate``: how many of the 100 chosen are local, the plate's best, how many beat ``best``, and the
  mean Hamming distance of a plate design to the nearest measured one;
- ``distance of pool>best``: the Hamming distance (min/median/max) to the nearest measured design of
  the local and scratch candidates the oracle scores above ``best``, and of every scratch candidate;
- ``unseen pairs``: the same for the number of (position, token) pairs of a candidate that no
  measured design has, and for the plate;
- ``above best``: for each candidate the oracle scores above ``best``, the reward model's mean and std,
  its rank among the pool's candidates (0 = first) by the mean and by mean + √beta·std (UCB), and the
  range of UCB over the plate.

Arguments: the problem, the starts (comma-separated numbers), the output folder, then any of
``bench_flexs.py``'s options (``--override seiko.local.remask=0.035``). The problem ``ehrlich`` runs
``bench_seiko.py`` instead, its seeds in place of the starts and its ``--task-arg`` among the
options. Runs land in ``OUT/runs`` as the benchmark writes them (a run already there is skipped, and
prints nothing), so a folder of this script's runs is a folder of the benchmark's::

    .venv/bin/python experiments/seiko_pool_composition.py aav_560_588 1,2,3 /tmp/pool_composition \\
        --override seiko.local.remask=0.035
"""

import argparse
import runpy
import sys
from pathlib import Path

import torch
from bench_flexs import problem_task
from bench_seiko import load_config
from hydra.utils import instantiate

import mbo.active.seiko as seiko
from mbo.data.alphabet import one_hot
from mbo.evaluate import hamming_to_nearest

problem, starts, out, *options = sys.argv[1:]
if problem == "ehrlich":
    bench = "bench_seiko.py"
    sys.argv = [bench, "--methods", "seiko_ucb", "--seeds", *starts.split(","), "--out", out, *options]
    parser = argparse.ArgumentParser()
    parser.add_argument("--task-arg", action="append", default=[])
    task = instantiate(load_config(parser.parse_known_args(options)[0].task_arg, [])[1])
else:
    bench = "bench_flexs.py"
    sys.argv = [bench, "flexs", "--problems", problem, "--methods", "seiko", "--seeds", "0",
                "--starts", *starts.split(","), "--out", out, *options]
    task = problem_task(problem, argparse.Namespace(oracle_workers=1, task_override=[]))
drawn: dict[str, torch.Tensor] = {}
draw, select_batch = seiko.LocalPool.draw, seiko.select_batch


def logged_draw(self, model, parents, n, sampler, generator, *args, **kwargs):
    local = draw(self, model, parents, n, sampler, generator, *args, **kwargs)
    drawn["local"], drawn["parents"] = local.cpu(), parents.cpu()
    return drawn["local"]


def logged_select_batch(reward_model, pool, q, **kwargs):
    selection = select_batch(reward_model, pool, q, **kwargs)
    local, parents, plate = drawn["local"], drawn["parents"], selection.tokens
    is_local = (pool[:, None, :] == local[None]).all(-1).any(-1)
    values, best = task.oracle(pool).float(), float(task.oracle(parents[:1]))
    on_plate = (plate[:, None, :] == pool[None]).all(-1).int().argmax(-1)  # the plate is drawn from the pool
    plate_values = values[on_plate]
    distance = hamming_to_nearest(plate, parents, task.alphabet.size)
    top = {k: f"{values[m].max():.3f}" if m.any() else "-"
           for k, m in (("local", is_local), ("scratch", ~is_local))}
    print(f"best {best:.3f} | pool {len(pool)} (local {int(is_local.sum())}; "
          f"{len(torch.unique(local, dim=0))} distinct of {len(local)} drawn) | pool>best: local "
          f"{int((values[is_local] > best).sum())} scratch {int((values[~is_local] > best).sum())} | "
          f"pool max local {top['local']} scratch {top['scratch']} | plate: local "
          f"{int(is_local[on_plate].sum())}, max {plate_values.max():.3f}, "
          f"above best {int((plate_values > best).sum())}, distance to measured {distance.mean():.1f}",
          flush=True)
    # How far the candidates that beat the best sit from the measured designs, in substitutions and
    # in (position, token) pairs no measured design has (the trust region's count).
    above = values > best
    pool_distance = hamming_to_nearest(pool, parents, task.alphabet.size)
    unseen = seiko.unseen_pairs(pool, parents)
    print(f"    distance of pool>best: local {span(pool_distance[is_local & above])} scratch "
          f"{span(pool_distance[~is_local & above])} | every scratch candidate "
          f"{span(pool_distance[~is_local])}", flush=True)
    print(f"    unseen pairs of pool>best: local {span(unseen[is_local & above])} scratch "
          f"{span(unseen[~is_local & above])} | every local {span(unseen[is_local])} scratch "
          f"{span(unseen[~is_local])} | plate {span(unseen[on_plate])}", flush=True)
    # Where the reward model puts the better candidates: a plate that passes over them ranks them low.
    with torch.no_grad():
        mean, std = reward_model.mean_std(one_hot(pool, task.alphabet.size).float())
    ucb = mean + float(kwargs.get("beta", 1.0)) ** 0.5 * std
    by_mean, by_ucb = ((v[None, :] > v[:, None]).sum(-1) for v in (mean, ucb))
    for i in torch.nonzero(above).flatten().tolist():
        print(f"    above best: true {values[i]:.3f}, mean {mean[i]:.3f} std {std[i]:.3f}, rank by mean "
              f"{int(by_mean[i])} by UCB {int(by_ucb[i])} of {len(pool)} | plate UCB "
              f"{ucb[on_plate].min():.3f}-{ucb[on_plate].max():.3f}", flush=True)
    return selection


def span(counts: torch.Tensor) -> str:
    """min/median/max of ``counts``, or "-" when empty."""
    return f"{int(counts.min())}/{int(counts.median())}/{int(counts.max())}" if len(counts) else "-"


seiko.LocalPool.draw, seiko.select_batch = logged_draw, logged_select_batch
runpy.run_path(str(Path(__file__).with_name(bench)), run_name="__main__")
