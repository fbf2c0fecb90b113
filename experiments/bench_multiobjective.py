"""Benchmark: a plate for two objectives — does qNEHVI grow the true Pareto front more than scalarizing?

Two TFBind8 landscapes of the same 8-mers are the two objectives (default SIX6 and PAX6, both
shipped). Per seed: ``--offline`` sequences drawn from the Design-Bench offline split of the first
landscape (its lower half) are "measured" on both (their normalized true scores); one reward model
per objective (``mbo-run``'s ``reward_model`` group, default deep ensemble) is fitted on them; a pool
of ``--pool`` samples of the pretrained diffusion model (``mbo-run``'s cached prior on the same
corpus) holds the candidates; each method picks a plate of ``--q`` new designs from that same pool:

- ``qnehvi``, ``qparego``, ``random_scalarization``: :func:`mbo.active.pareto.select_pareto_batch`;
- ``single objective``: the ``q`` best by the first objective's predicted mean (what the
  single-objective pipeline ranks by);
- ``pool``: ``q`` candidates at random (what the prior alone gives).

Metric: the true hypervolume of the plate above the reference point (each objective's worst measured
value), and the hypervolume the plate adds to the measured designs' front; the last row is the best
any plate of ``q`` from the whole space could approach: the hypervolume of the true Pareto front of all
65,536 8-mers. ``OUT.png`` shows seed 0's plates against the measured designs and the true front.

Run: ``.venv/bin/python experiments/bench_multiobjective.py --seeds 0 1 2 3 4
--out experiments/results/multiobjective``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from hydra.utils import instantiate

from experiments.report import mean_se, plus_minus
from mbo.active.pareto import PARETO_METHODS, hypervolume, pareto_mask, select_pareto_batch
from mbo.active.selection import unmeasured
from mbo.atomic import atomic_path, atomic_write_text
from mbo.config import compose_config
from mbo.data.alphabet import one_hot
from mbo.data.dataset import SequenceDataset
from mbo.diffusion.cache import pretrained_diffusion
from mbo.tasks import TFBind8

RESULTS = Path(__file__).parent / "results"
METHODS = [*PARETO_METHODS, "single objective", "pool"]


def run_seed(seed: int, args, cfg, tasks, pretrained) -> dict:
    gen = torch.Generator().manual_seed(seed)
    offline = tasks[0].offline_dataset()
    rows = torch.randperm(len(offline), generator=gen)[: args.offline]
    measured = offline.tokens[rows]
    true_measured = torch.stack([t.oracle(measured).double() for t in tasks], -1)  # (n, 2)
    ref = true_measured.min(0).values
    t = time.perf_counter()
    models = [instantiate(cfg.reward_model).fit(SequenceDataset(measured, tasks[0].alphabet,
                                                                labels=true_measured[:, m].float()),
                                                seed=seed)
              for m in range(len(tasks))]
    fit_s = time.perf_counter() - t
    with torch.no_grad():
        pool = unmeasured(pretrained.sample(args.pool, generator=gen).cpu(), measured)
    out = {"seed": seed, "fit_s": fit_s, "pool": len(pool),
           "measured_hv": hypervolume(true_measured, ref), "methods": {}}
    for method in METHODS:
        t = time.perf_counter()
        if method in PARETO_METHODS:
            plate = select_pareto_batch(models, pool, args.q, vocab_size=4, ref_point=ref, baseline=measured,
                                        method=method, seed=seed).tokens
        elif method == "single objective":
            mean, _ = models[0].mean_std(one_hot(pool, 4))
            plate = pool[mean.argsort(descending=True)[: args.q]]
        else:
            plate = pool[torch.randperm(len(pool), generator=gen)[: args.q]]
        seconds = time.perf_counter() - t
        y = torch.stack([t_.oracle(plate).double() for t_ in tasks], -1)
        out["methods"][method] = {
            "hv": hypervolume(y, ref), "hv_gain": hypervolume(torch.cat([true_measured, y]), ref)
            - out["measured_hv"], "front": int(pareto_mask(y).sum()), "best": y.max(0).values.tolist(),
            "select_s": seconds, "true": y.tolist()}
        print(f"seed {seed} {method:22s} HV {out['methods'][method]['hv']:.4f} gain "
              f"{out['methods'][method]['hv_gain']:.4f} ({seconds:.1f} s)", flush=True)
    out["measured_true"] = true_measured.tolist()
    return out


def plot(path: Path, run: dict, front: torch.Tensor, names: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(6, 5))
    m = torch.tensor(run["measured_true"])
    ax.scatter(m[:, 0], m[:, 1], s=4, c="0.75", label="measured (offline)")
    order = front[:, 0].argsort()
    ax.plot(front[order, 0], front[order, 1], "k-", lw=1, label="true front (all 8-mers)")
    for method, marker in zip(METHODS, "os^vx", strict=True):
        y = torch.tensor(run["methods"][method]["true"])
        ax.scatter(y[:, 0], y[:, 1], s=12, marker=marker, alpha=0.7, label=method)
    ax.set_xlabel(f"true {names[0]}")
    ax.set_ylabel(f"true {names[1]}")
    ax.set_title(f"Plates of {len(y)} (seed {run['seed']})")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--landscapes", nargs=2, default=["SIX6_REF_R1", "PAX6_REF_R1"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--offline", type=int, default=2000, help="measured sequences per seed")
    p.add_argument("--pool", type=int, default=4000, help="prior samples the plates are chosen from")
    p.add_argument("--q", type=int, default=128, help="plate size")
    p.add_argument("--override", action="append", default=[], help="mbo-run config override")
    p.add_argument("--out", type=Path, default=RESULTS / "multiobjective")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = ("python experiments/bench_multiobjective.py "
               + shlex.join(sys.argv[1:] if argv is None else argv))
    cfg = compose_config("config", [f"task.landscape={args.landscapes[0]}", *args.override])
    tasks = [TFBind8(name) for name in args.landscapes]
    pretrained = pretrained_diffusion(tasks[0].pretrain_corpus(), 4, cfg.diffusion, cfg.cache_dir,
                                      name=tasks[0].name)
    pretrained.requires_grad_(False)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        path = args.out / "runs" / f"seed{seed}.json"
        if not path.exists():
            atomic_write_text(path, json.dumps(run_seed(seed, args, cfg, tasks, pretrained)))
        runs.append(json.loads(path.read_text()))
    everything = torch.cartesian_prod(*[torch.arange(4)] * 8)
    y_all = torch.stack([t.oracle(everything).double() for t in tasks], -1)
    front = y_all[pareto_mask(y_all)]
    ceiling = [hypervolume(front, torch.tensor(r["measured_true"]).min(0).values) for r in runs]
    summary = {m: {k: mean_se([r["methods"][m][k] for r in runs]) for k in ("hv", "hv_gain", "front",
                                                                          "select_s")}
               for m in METHODS}
    for m in METHODS:
        summary[m]["best"] = [mean_se([r["methods"][m]["best"][j] for r in runs]) for j in range(2)]
    lines = [f"# Two objectives: {args.landscapes[0]} and {args.landscapes[1]} (TFBind8), plates of {args.q}",
             "", f"Command: `{command}`", "",
             f"torch {torch.__version__}, {platform.machine()} CPU, 1 thread; {len(runs)} seeds "
             f"({args.offline} measured sequences each, a pool of {args.pool} prior samples, ~"
             f"{statistics.fmean(r['pool'] for r in runs):.0f} new). Hypervolume of the TRUE values above "
             "each objective's worst measured value; gain = what the plate adds to the measured front. "
             "Mean ± se over seeds.", "",
             "| method | true HV of the plate | HV gain over the measured front "
             f"| plate designs on its own front | best {args.landscapes[0]} | best {args.landscapes[1]} "
             "| selection (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for m in METHODS:
        s = summary[m]
        lines.append(f"| {m} | {plus_minus(s['hv'], '.4f')} | {plus_minus(s['hv_gain'], '.4f')} | "
                     f"{plus_minus(s['front'], '.1f')} | {plus_minus(s['best'][0])} | "
                     f"{plus_minus(s['best'][1])} | {plus_minus(s['select_s'], '.1f')} |")
    measured_hv = plus_minus(mean_se([r["measured_hv"] for r in runs]), ".4f")
    lines += [f"| measured designs ({args.offline}) | {measured_hv} | – | – | – | – | – |",
              f"| true front of all 65,536 8-mers ({len(front)} designs) | "
              f"{plus_minus(mean_se(ceiling), '.4f')} | – | – | – | – | – |", "",
              f"![plates]({args.out.name}.png)", ""]
    wins = sum(r["methods"]["qnehvi"]["hv"] >= r["methods"]["random_scalarization"]["hv"] for r in runs)
    lines.append(f"qNEHVI's plate has at least random scalarization's true hypervolume in {wins} of "
                 f"{len(runs)} seeds.")
    text = "\n".join(lines) + "\n"
    plot(args.out.with_suffix(".png"), runs[0], front, args.landscapes)
    atomic_write_text(args.out.with_suffix(".md"), text, overwrite=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(
        {"command": command, "summary": summary, "ceiling": ceiling,
         "runs": [{k: v for k, v in r.items() if k != "measured_true"} for r in runs]}, indent=1),
        overwrite=True)
    print(text)


if __name__ == "__main__":
    main()
