"""Benchmark: designs that meet a lab's constraints — does every method honor them, and what do they cost?

Each method runs through ``mbo-run``'s own pipeline (:func:`experiments.run.run`, its default settings
plus the method's option) with three rules at once, then every written design is checked again by the
ground truth of the rules (:meth:`mbo.constraints.Constraints.satisfied`) and scored by the task's
oracle:

- ``tfbind8``: the first two letters fixed to those of the best offline sequence, forbidden motifs
  ``GAATTC`` (EcoRI, both strands) and the 4-mer most enriched in the top 1 % of offline labels (so the
  rule bites where the reward points), GC content in [0.25, 0.5];
- ``ehrlich``: offline Ehrlich (CNN ensemble): the first four letters fixed to the best offline
  sequence's, the 3-mer most enriched in the top 10 % of offline labels forbidden (no GC rule: not a
  nucleotide alphabet).

Methods: the four fine-tuners (``finetune=backprop|ppo|rwr|vidd``) and the six inference-time methods
(``method=best_of_n|svdd_pm|svdd_mc|smc|gradient|refinement``). Columns: designs written, designs
breaking a rule (the goal is 0), samples rejected by the global rules, true p50 / p100, feasible
fraction, wall time. On TFBind8 a last row enumerates all 65,536 8-mers, keeps those meeting the rules
and takes the top 128 by the reward model's mean: the best any method that trusts the same model can
do under the same rules; ``p50 / enum`` is each method's true p50 over that row's.

Each (setting, method, seed) result goes to ``OUT/runs/`` as it finishes (skipped if present);
``--report`` aggregates whatever exists into ``OUT.md`` / ``OUT.json``.

Run: ``.venv/bin/python experiments/bench_constraints.py --seeds 0 --out experiments/results/constraints``.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments.report import mean_se, plus_minus
from experiments.run import run
from experiments.settings import EHRLICH_GENERAL, TFBIND8_GENERAL
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.constraints import constraints_from_settings
from mbo.data.io import read_csv
from mbo.reward_optimizers import exhaustive_search

RESULTS = Path(__file__).parent / "results"
SETTINGS = {"tfbind8": TFBIND8_GENERAL, "ehrlich": EHRLICH_GENERAL}
# `~method`: fine-tune even where the task steers by default (Ehrlich: gradient guidance).
METHODS = {"backprop": ["finetune=backprop", "~method"], "ppo": ["finetune=ppo", "~method"],
           "rwr": ["finetune=rwr", "~method"], "vidd": ["finetune=vidd", "~method"],
           "best_of_n": ["method=best_of_n"], "svdd_pm": ["method=svdd_pm"],
           "svdd_mc": ["method=svdd_mc"], "smc": ["method=smc"], "gradient": ["method=gradient"],
           "refinement": ["method=refinement"]}


def enriched_kmer(sequences: list[str], labels: torch.Tensor, k: int, top: float) -> str:
    """The k-mer whose frequency in the top ``top`` fraction of labels most exceeds its overall one."""
    order = labels.argsort(descending=True)
    best = [sequences[i] for i in order[: max(1, int(top * len(sequences)))].tolist()]

    def freq(seqs):
        c = collections.Counter(s[i:i + k] for s in seqs for i in range(len(s) - k + 1))
        return c, sum(c.values())

    (c_top, n_top), (c_all, n_all) = freq(best), freq(sequences)
    return max(c_top, key=lambda m: (c_top[m] / n_top - c_all[m] / n_all, m))


def rules(setting: str, task, offline) -> dict:
    """The constraints node of a setting, derived from the offline data (see the module docstring)."""
    seqs, labels = offline.sequences(), offline.labels
    best = seqs[int(labels.argmax())]
    if setting == "tfbind8":
        return {"fixed": best[:2] + "." * (task.length - 2),
                "forbidden_motifs": ["GAATTC", enriched_kmer(seqs, labels, 4, 0.01)], "gc": [0.25, 0.5]}
    return {"fixed": best[:4] + "." * (task.length - 4),
            "forbidden_motifs": [enriched_kmer(seqs, labels, 3, 0.1)]}


def run_one(setting: str, method: str, seed: int, args) -> dict:
    cfg = compose_config("config", [*SETTINGS[setting], *METHODS[method], f"seed={seed}", "threads=1",
                                    "progress=false", *args.override])
    task = instantiate(cfg.task, _partial_=True)()
    offline = task.offline_dataset()
    node = rules(setting, task, offline)
    OmegaConf.update(cfg, "constraints", node, merge=True, force_add=True)
    constraints = constraints_from_settings(cfg.constraints, task.alphabet, task.length)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(cfg, Path(tmp))
        designs = read_csv(Path(tmp) / "designs.csv", task.alphabet, sequence_column="sequence",
                           label_columns=None)
    seconds = time.perf_counter() - t
    tokens = designs.tokens
    y = task.oracle(tokens).double()
    finite = y[torch.isfinite(y)]
    return {"setting": setting, "method": method, "seed": seed, "constraints": node,
            "written": len(tokens), "violating": int((~constraints.satisfied(tokens)).sum()),
            "rejected": result["designs"]["rejected"], "sampled": result["designs"]["sampled"],
            "true_p50": float(finite.median()) if len(finite) else float("nan"),
            "true_p100": float(finite.max()) if len(finite) else float("nan"),
            "feasible": float(torch.isfinite(y).float().mean()), "time_s": seconds}


def enumeration(seed: int, args) -> dict:
    """TFBind8: the top 128 meeting the rules by the reward model's mean, over all 65,536 8-mers."""
    cfg = compose_config("config", [*TFBIND8_GENERAL, f"seed={seed}", *args.override])
    task = instantiate(cfg.task, _partial_=True)()
    offline = task.offline_dataset()
    node = rules("tfbind8", task, offline)
    constraints = constraints_from_settings(node, task.alphabet, task.length)
    t = time.perf_counter()
    model = instantiate(cfg.reward_model).fit(offline, seed=seed)
    new = set(offline.sequences())

    def mean(x: torch.Tensor) -> torch.Tensor:
        m, _ = model.mean_std(x)
        # Offline sequences are not new designs; the pipeline never returns them either.
        seen = torch.tensor([s in new for s in task.alphabet.decode(x.argmax(-1))])
        return m.masked_fill(seen, float("-inf"))

    tokens, _ = exhaustive_search(mean, task.length, task.alphabet.size, top_k=int(cfg.n_designs),
                                  constraints=constraints)
    y = task.oracle(tokens).double()
    return {"setting": "tfbind8", "method": "enumeration", "seed": seed, "constraints": node,
            "written": len(tokens), "violating": int((~constraints.satisfied(tokens)).sum()),
            "rejected": 0, "sampled": 65536, "true_p50": float(y.median()), "true_p100": float(y.max()),
            "feasible": 1.0, "time_s": time.perf_counter() - t}


def report(args, command: str) -> None:
    runs = [json.loads(p.read_text()) for p in sorted((args.out / "runs").glob("*.json"))]
    lines = ["# Constrained designs: every method under a fixed region, forbidden motifs and a GC window",
             "", f"Command: `{command}`", "",
             f"torch {torch.__version__}, {platform.machine()} CPU, 1 thread. Each method is `mbo-run` "
             "with its default settings and the method's option; `violating` counts written designs "
             "that break a rule (rechecked), `rejected` the samples the global rules turned away. "
             "Mean ± se over seeds.",
             ""]
    summary: dict = {}
    for setting in SETTINGS:
        rows = [r for r in runs if r["setting"] == setting]
        if not rows:
            continue
        lines += [f"## {setting}", "", f"Rules (seed 0): `{json.dumps(rows[0]['constraints'])}`", "",
                  "| method | seeds | written | violating | rejected / sampled | true p50 | true p100 "
                  "| feasible | p50 / enum | time (s) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        enum = {r["seed"]: r["true_p50"] for r in rows if r["method"] == "enumeration"}
        summary[setting] = {}
        for method in [*METHODS, "enumeration"]:
            rs = [r for r in rows if r["method"] == method]
            if not rs:
                continue
            stat = {k: mean_se([r[k] for r in rs]) for k in ("true_p50", "true_p100", "feasible", "time_s")}
            ratio = [r["true_p50"] / enum[r["seed"]] for r in rs if r["seed"] in enum]
            stat["p50_over_enum"] = mean_se(ratio) if ratio else (float("nan"), float("nan"))
            stat["violating"] = sum(r["violating"] for r in rs)
            stat["written"] = sum(r["written"] for r in rs)
            summary[setting][method] = stat
            rej = sum(r["rejected"] for r in rs) / max(1, sum(r["sampled"] for r in rs))
            lines.append(f"| {method} | {len(rs)} | {stat['written']} | {stat['violating']} | {rej:.3f} | "
                         f"{plus_minus(stat['true_p50'])} | {plus_minus(stat['true_p100'])} | "
                         f"{plus_minus(stat['feasible'])} | "
                         f"{plus_minus(stat['p50_over_enum']) if ratio else '–'} | "
                         f"{statistics.fmean(r['time_s'] for r in rs):.0f} |")
        lines.append("")
    out = args.out.with_suffix(".md")
    atomic_write_text(out, "\n".join(lines), overwrite=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"command": command, "summary": summary,
                                                                 "runs": runs}, indent=1), overwrite=True)
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--override", action="append", default=[], help="mbo-run config override (every run)")
    p.add_argument("--out", type=Path, default=RESULTS / "constraints")
    p.add_argument("--report", action="store_true", help="only aggregate existing runs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "python experiments/bench_constraints.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if not args.report:
        (args.out / "runs").mkdir(parents=True, exist_ok=True)
        jobs = [(s, m, k) for k in args.seeds for s in args.settings for m in args.methods]
        jobs += [("tfbind8", "enumeration", k) for k in args.seeds if "tfbind8" in args.settings]
        for setting, method, seed in jobs:
            path = args.out / "runs" / f"{setting}__{method}__seed{seed}.json"
            if path.exists():
                continue
            out = enumeration(seed, args) if method == "enumeration" else run_one(setting, method, seed, args)
            atomic_write_text(path, json.dumps(out, indent=1))
            print(f"{setting} {method} seed {seed}: violating {out['violating']}/{out['written']} "
                  f"p50 {out['true_p50']:.3f} ({out['time_s']:.0f} s)", flush=True)
    report(args, command)


if __name__ == "__main__":
    main()
