"""Benchmark: offline design on an Ehrlich function — does BRAID stay feasible and beat the data?

From the task's offline split (2,000 feasible, low-scoring sequences; no queries), one CNN deep
ensemble per seed, and the diffusion model pretrained on unlabeled chain samples (cached as
``mbo-run`` caches it), each method proposes 128 designs scored by the true Ehrlich function:

- pretrained: samples of the pretrained model (no reward);
- best-of-N ranked: N pretrained samples, the 128 the ensemble mean ranks highest;
- naive fine-tuning (c = 0) and BRAID (mean − c·std): mbo-run's fine-tuner with its KL leash;
- hill climbing and gradient ascent: unconstrained optimization of the ensemble mean from the 128
  best offline sequences (the off-manifold failure BRAID is meant to avoid).

Settings are ``mbo-run``'s config with the overrides in :data:`~experiments.settings.EHRLICH_GENERAL`
(Ehrlich as this benchmark first ran it: the 9-position CNN, min-p 1e-3; BRAID's c is mbo-run's,
auto), then ``--override``.

Run: ``.venv/bin/python experiments/bench_ehrlich_offline.py --seeds 0 1 2`` (writes
``experiments/results/ehrlich_offline.{md,json}``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from conservative import ScaledReward, label_scale
from experiments.run import conservative_reward
from experiments.settings import EHRLICH_GENERAL
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.data.alphabet import one_hot
from mbo.diffusion.cache import pretrained_diffusion
from mbo.reward_optimizers import gradient_ascent, hill_climb

RESULTS = Path(__file__).parent / "results"
N_DESIGNS = 128


def metrics(task, designs: torch.Tensor, best_offline: float) -> dict:
    y = task.oracle(designs.cpu()).double()
    feasible = torch.isfinite(y)
    yf = y[feasible]
    return {"feasible": feasible.double().mean().item(),
            "true_max": yf.max().item() if len(yf) else float("nan"),
            "true_median_feasible": yf.median().item() if len(yf) else float("nan"),
            "beat_offline": (y > best_offline).double().mean().item(),
            "unique": len(torch.unique(designs, dim=0))}


def run_seed(seed: int, args, task, offline, pretrained, cfg) -> dict[str, dict]:
    out: dict[str, dict] = {}
    best = float(offline.labels.max())
    gen = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    ensemble = instantiate(cfg.reward_model).fit(offline, seed=seed)
    t_fit = time.perf_counter() - t
    vocab = task.alphabet.size

    def record(name, designs, seconds, extra=None):
        m = metrics(task, designs, best)
        m["time_s"] = seconds
        m.update(extra or {})
        out[name] = m
        print(f"  seed {seed} {name:32s} feasible {m['feasible']:.3f} max {m['true_max']:.3f} "
              f"median {m['true_median_feasible']:.3f} beat {m['beat_offline']:.3f} "
              f"({seconds:.0f} s)", flush=True)

    with torch.no_grad():
        t = time.perf_counter()
        record("pretrained", pretrained.sample(N_DESIGNS, generator=gen), time.perf_counter() - t)
        t = time.perf_counter()
        pool = torch.cat([pretrained.sample(1000, generator=gen) for _ in range(args.ranked // 1000)])
        mean, _ = ensemble.mean_std(one_hot(pool, vocab))
        ranked = pool[mean.argsort(descending=True)[:N_DESIGNS]]
        record(f"best-of-{args.ranked} ranked by ensemble", ranked, time.perf_counter() - t + t_fit)
    braid, chosen = conservative_reward(cfg, ensemble, pretrained, offline, pretrained.device)
    braid_c = chosen["c"] if chosen else cfg.conservative.c
    alpha = chosen["alpha"] if chosen else cfg.finetune.alpha
    naive_name = "naive fine-tuning (c=0)"
    for name, reward in ((naive_name, instantiate(cfg.conservative, c=0.0)(ensemble)),
                         (f"BRAID ensemble-std (c={braid_c:g}{', auto' if chosen else ''})", braid)):
        extra = {"c": braid_c, "alpha": alpha} if name.startswith("BRAID") else {}
        if extra and braid_c == 0:
            # c = 0 is naive fine-tuning: the same reward, seed and α train the same model (deterministic).
            out[name] = {**out[naive_name], **extra}
            print(f"  seed {seed} {name}: c = 0, the naive row's designs", flush=True)
            continue
        t = time.perf_counter()
        scaled = ScaledReward(reward, label_scale(offline.labels))
        model, history = instantiate(cfg.finetune)(pretrained, scaled, alpha=alpha, seed=seed,
                                                   progress=args.progress)
        with torch.no_grad():
            designs = model.sample(N_DESIGNS, generator=torch.Generator().manual_seed(seed), ref=pretrained)
        record(name, designs, time.perf_counter() - t + t_fit, {"final_kl": history[-1]["kl"], **extra})
    start = offline.tokens[offline.labels.argsort(descending=True)[:N_DESIGNS]]
    naive = instantiate(cfg.conservative, c=0.0)(ensemble)
    t = time.perf_counter()
    record("hill climbing (ensemble mean)", hill_climb(naive, start, vocab, steps=200, seed=seed),
           time.perf_counter() - t + t_fit)
    t = time.perf_counter()
    record("gradient ascent (ensemble mean)", gradient_ascent(naive, start, vocab, steps=200, lr=0.05),
           time.perf_counter() - t + t_fit)
    return out


def _braid_row(seed_result: dict) -> dict:
    """One row name for BRAID whatever c each seed chose (kept as the row's ``c``), so seeds line up."""
    out = {}
    for name, m in seed_result.items():
        if name.startswith("BRAID") and "auto" in name:
            m = {**m, "c": m.get("c", float(name.split("c=")[1].split(",")[0]))}
            name = "BRAID ensemble-std (c = auto)"
        out[name] = m
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--task-arg", action="append", default=[], help="Ehrlich argument, e.g. length=64")
    p.add_argument("--override", action="append", default=[], help="mbo-run config override")
    p.add_argument("--ranked", type=int, default=10000)
    p.add_argument("--out", type=Path, default=RESULTS / "ehrlich_offline")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = ("python experiments/bench_ehrlich_offline.py "
               + shlex.join(sys.argv[1:] if argv is None else argv))
    cfg = compose_config("config", [*EHRLICH_GENERAL, *[f"task.{a}" for a in args.task_arg], *args.override])
    task = instantiate(cfg.task)
    offline = task.offline_dataset()
    pretrained = pretrained_diffusion(task.pretrain_corpus(), task.alphabet.size, cfg.diffusion,
                                      cfg.cache_dir, name=task.name, progress=args.progress)
    pretrained.requires_grad_(False)
    start = time.perf_counter()
    runs = args.out.with_name(args.out.name + "_runs")
    runs.mkdir(parents=True, exist_ok=True)
    per_seed = []
    for s in args.seeds:  # each seed is kept as soon as it is done; a rerun skips it
        path = runs / f"seed{s}.json"
        if not path.exists():
            atomic_write_text(path, json.dumps(run_seed(s, args, task, offline, pretrained, cfg)))
        per_seed.append(_braid_row(json.loads(path.read_text())))
    rows = list(per_seed[0])
    table = {}
    for row in rows:
        table[row] = {}
        for k in per_seed[0][row]:
            # A method with no feasible design has no true score (NaN): average the seeds that have one.
            vals = [r[row][k] for r in per_seed if math.isfinite(r[row][k])]
            table[row][k] = ([statistics.fmean(vals),
                              statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else 0.0]
                             if vals else None)

    def cell(row, key, digits=3):
        if table[row][key] is None:
            return "– (no feasible design)"
        m, s = table[row][key]
        return f"{m:.{digits}f} ± {s:.{digits}f}"

    lines = [f"# Offline design on Ehrlich ({task.name}), {len(args.seeds)} seeds × {N_DESIGNS} designs", "",
             f"Command: `{command}`", "",
             f"Offline split: {len(offline)} feasible chain samples scoring ≤ {task.offline_max_score}; best "
             f"offline {float(offline.labels.max()):.3f}. Reward model: `{cfg.reward_model._target_}` "
             f"with conv_channels {list(cfg.reward_model.conv_channels)}, dilations "
             f"{list(cfg.reward_model.get('dilations') or [])}. α = {cfg.finetune.alpha} (× std "
             f"of offline labels), {cfg.finetune.iterations} fine-tuning iterations. "
             f"torch {torch.__version__}, "
             "1 thread, "
             f"{platform.machine()} CPU; wall {(time.perf_counter() - start) / 60:.1f} min.", "",
             "| method | feasible | best true | median true (feasible) | > offline best | unique | time s |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row} | {cell(row, 'feasible')} | {cell(row, 'true_max')} | "
                     f"{cell(row, 'true_median_feasible')} | {cell(row, 'beat_offline')} | "
                     f"{cell(row, 'unique', 1)} | {cell(row, 'time_s', 0)} |")
    picks = [r[k]["c"] for r in per_seed for k in r if k.startswith("BRAID") and "c" in r[k]]
    if picks:
        lines += ["", f"BRAID's c per seed (`conservative.c=auto`, from the offline data alone): "
                      f"{', '.join(f'{c:g}' for c in picks)}."]
    lines += ["", "± is the standard error over seeds; '> offline best' is the fraction of the 128 "
              "designs whose true score beats the best offline label (infeasible designs count as not).", ""]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines), overwrite=True)
    atomic_write_text(args.out.with_suffix(".json"),
                      json.dumps({"command": command, "per_seed": per_seed, "table": table}, indent=1),
                      overwrite=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
