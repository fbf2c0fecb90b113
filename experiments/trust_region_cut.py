"""How much of a prior's own output the SEIKO trust region refuses, before any round is run.

For each seed of ``bench_seiko.py``'s Ehrlich task: 500 samples of the pretrained prior against the
seed's initial designs, and the share outside the trust region (``mbo.active.seiko.within_trust``,
no widening) with K = 2 unseen (position, token) pairs alone, and with the measured designs' spread
taken as the 90th percentile (the rule) or the median of their distances to their nearest other.
Prints a Markdown table and writes JSON::

    .venv/bin/python experiments/trust_region_cut.py --out experiments/results/seiko_trust_spread_cut.json
"""

import argparse
import json

import torch
from bench_seiko import initial_designs, load_config
from hydra.utils import instantiate

from mbo.active.seiko import unseen_pairs, within_trust
from mbo.atomic import atomic_write_text
from mbo.diffusion.cache import pretrained_diffusion
from mbo.evaluate import hamming_to_nearest, hamming_to_nearest_other

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--length", type=int, default=32)
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
parser.add_argument("--samples", type=int, default=500)
parser.add_argument("--max-unseen", type=int, default=2)
parser.add_argument("--out", required=True)
args = parser.parse_args()
torch.set_num_threads(1)

cfg, task_cfg = load_config([f"length={args.length}"], [])
task = instantiate(task_cfg)
prior = pretrained_diffusion(task.pretrain_corpus(), task.alphabet.size, cfg.diffusion, cfg.cache_dir,
                             name=task.name)
rows = []
print("| seed | cut by K alone | cut by the rule (90th percentile) | cut with the median as the spread |")
print("|---:|---:|---:|---:|")
for seed in args.seeds:
    measured = initial_designs(task, 100, seed).tokens
    samples = prior.sample(args.samples, generator=torch.Generator().manual_seed(seed)).cpu()
    beyond = unseen_pairs(samples, measured) > args.max_unseen
    distance = hamming_to_nearest(samples, measured, task.alphabet.size)
    median = hamming_to_nearest_other(measured, task.alphabet.size).float().median()
    row = {"seed": seed, "k_alone": float(beyond.float().mean()),
           "rule": 1 - len(within_trust(samples, measured, args.max_unseen, keep=0)) / len(samples),
           "median": float((beyond & (distance > median)).float().mean())}
    rows.append(row)
    print(f"| {seed} | {row['k_alone']:.2f} | {row['rule']:.2f} | {row['median']:.2f} |", flush=True)
result = {"task": task.name, "samples": args.samples, "max_unseen": args.max_unseen, "rows": rows}
atomic_write_text(args.out, json.dumps(result, indent=1), overwrite=True)
