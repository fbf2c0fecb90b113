"""Benchmark: how wide the CNN ensemble's receptive field must be to rank Ehrlich sequences it never saw.

An Ehrlich motif spreads its 4 elements over up to L / num_motifs positions (14–15 on the instances
below). Two convolutions of width 5 see 9 positions at once; after the max over positions, the pieces
of a wider motif are detected, but not where they sit relative to each other. Dilating the second
convolution widens the field (1 + 4·(1 + d) positions) without holes while d ≤ 5.

Per Ehrlich instance (``--instances``: task overrides, comma-separated) and seed: the
``conv_ensemble`` reward model with each ``--dilations`` arm (one convolution per dilation, so
``1,4,4`` is three layers of the config's width, a 37-position field) is fitted on the task's offline split
(2,000 chain samples scoring ≤ 0.5) and judged on 6,000 fresh chain samples it never saw: the 2,000
highest-scoring of 200,000 and 4,000 drawn at random from the rest. Columns: Spearman's ρ of the mean
with the oracle on all 6,000 and on the top 2,000, and the true p50 / p100 of the 128 that rank highest
by the mean (what a perfect maximizer of the model would submit from these), fit seconds.

Run::

    .venv/bin/python experiments/bench_cnn_field.py --out experiments/results/cnn_field
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

from experiments.report import arms_table, write_aggregates
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.data.alphabet import one_hot

METRICS = (("spearman", "ρ, all 6,000"), ("spearman_top", "ρ, top 2,000"),
           ("top128_p50", "top 128: true p50"), ("top128_p100", "top 128: true p100"), ("fit_s", "fit s"))


def field(kernel_size: int, dilations: list[int]) -> int:
    """Input positions that reach one output position."""
    return 1 + (kernel_size - 1) * sum(dilations)


def test_set(task, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """6,000 fresh chain samples ``(6000, L)`` and their oracle values ``(6000,)`` (see the docstring)."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    tokens = task.fresh_corpus(200_000, gen)
    values = task.oracle(tokens)
    order = values.argsort(descending=True)
    rest = order[2000:][torch.randperm(len(order) - 2000, generator=gen)[:4000]]
    pick = torch.cat([order[:2000], rest])
    return tokens[pick], values[pick]


def run(instance: str, dilations: list[list[int]], seed: int, reward_overrides: list[str]) -> dict:
    overrides = ["task=ehrlich", *[f"task.{kv}" for kv in instance.split(",") if kv]]
    task = instantiate(compose_config("config", overrides).task)
    offline = task.offline_dataset()
    tokens, truth = test_set(task, seed)
    x = one_hot(tokens, task.alphabet.size).float()
    out = {"instance": instance, "task": task.name, "seed": seed, "n_train": len(offline),
           "best_offline": float(offline.labels.max()), "command": shlex.join(["python", *sys.argv]),
           "reward_model_overrides": reward_overrides, "arms": {}}
    for dil in dilations:
        cfg = compose_config("config", [*overrides, "reward_model=conv_ensemble",
                                        *reward_overrides]).reward_model
        # One convolution per dilation, each as wide as the config's last: an arm of three dilations
        # is a three-layer stack.
        cfg.conv_channels = [cfg.conv_channels[-1]] * len(dil)
        cfg.dilations = dil
        model = instantiate(cfg, device="cpu")
        t = time.perf_counter()
        model.fit(offline, seed=seed)
        fit_s = time.perf_counter() - t
        with torch.no_grad():
            mean, _ = model.mean_std(x)
        top = truth[mean.argsort(descending=True)[:128]]
        name = f"dilations {dil} (field {field(int(cfg.kernel_size), dil)})"
        out["arms"][", ".join([name, *reward_overrides])] = {
            "spearman": float(spearmanr(mean.numpy(), truth.numpy()).correlation),
            "spearman_top": float(spearmanr(mean[:2000].numpy(), truth[:2000].numpy()).correlation),
            "top128_p50": float(top.median()), "top128_p100": float(top.max()), "fit_s": fit_s}
    return out


def report(out: Path, runs: list[dict]) -> str:
    lines = ["# The CNN ensemble's receptive field on Ehrlich", "",
             f"Command: `python experiments/bench_cnn_field.py --out {out.as_posix()}` (per-seed JSON in "
             f"`{out.name}/runs/`; the protocol is in the script's docstring). Mean ± se over seeds; "
             "each seed fits the models and draws the test set anew.", ""]
    for instance in dict.fromkeys(r["instance"] for r in runs):
        group = [r for r in runs if r["instance"] == instance]
        lines += [f"## {group[0]['task']} ({len(group)} seeds; best offline label "
                  f"{group[0]['best_offline']:.3f})", "", *arms_table(group, METRICS)]
        lines.append("")
    lines.append(f"Machine: {platform.machine()}, torch {torch.__version__}, threads 1.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder; OUT.md and OUT.json beside it")
    parser.add_argument("--instances", nargs="+",
                        default=["seed=0", "seed=1", "num_states=20,seed=2", "length=64,num_motifs=4"])
    parser.add_argument("--dilations", nargs="+", default=["1,1", "1,2", "1,4"],
                        help="one arm per comma-separated list, one convolution per dilation")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a reward_model setting for every arm (repeatable): reward_model.min_steps=2000")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dilations = [[int(d) for d in arm.split(",")] for arm in args.dilations]
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    for instance in args.instances:
        for seed in args.seeds:
            path = args.out / "runs" / f"{instance.replace(',', '_').replace('=', '')}__seed{seed}.json"
            if not path.exists():
                atomic_write_text(path, json.dumps(run(instance, dilations, seed, args.override), indent=1))
    runs = [json.loads(p.read_text()) for p in sorted((args.out / "runs").glob("*.json"))]
    runs = [r for r in runs if r["instance"] in args.instances]
    text = report(args.out, runs)
    write_aggregates(args.out, runs, text)
    print(text)


if __name__ == "__main__":
    main()
