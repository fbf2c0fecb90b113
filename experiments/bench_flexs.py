"""Benchmark: the FLEXS protocol (arXiv 2010.02141) on RNA binding and AAV, and RNA inverse folding.

``flexs``: one campaign per (problem, published start, seed). A campaign starts from that one
measured sequence and runs ``--rounds`` (10) rounds of ``--batch`` (100) oracle queries; methods with a
model may make up to ``--model-queries`` (2,000) model predictions per round, which are not oracle
calls (AdaLead's cap; SEIKO's fine-tuning evaluates its reward model on far more, as the method does).
Metric: the best true fitness measured so far after each round (round 0 = the start), averaged
over starts and seeds. Problems: ``L14_RNA1``, ``L14_RNA1+2``, ``C20_L100_RNA1+3`` (AdaLead's Table 1;
its conserved region is a constraint scored ``-inf``, so only its feasible starts 1-3 are campaigns),
``aav_560_588`` and ``aav_450_540`` (heart). Methods:

- ``adalead``: :func:`mbo.active.adalead.adalead` (3-MLP deep ensemble, κ = 0.05, recombination 0.2);
- ``random``: :func:`mbo.active.random_mutagenesis.random_mutagenesis` (FLEXS's Random explorer);
- ``ga``: :func:`mbo.active.oracle_baselines.genetic_algorithm` (holo's DiscreteEvolution, elitist);
- ``gpbo``: :func:`mbo.active.oracle_baselines.gp_bo` (Hamming-kernel GP, qUCB, local search);
- ``seiko``: :func:`mbo.active.run_seiko` with a campaign's settings (``mbo/conf/campaign.yaml``, plus
  ``--override``), its prior pretrained on the task's corpus (random mutants of the starts) and cached.
  It is given the task's required letters (C20's conserved region) as constraints, as a user would
  give them to ``mbo-campaign``; the oracle baselines are not (FLEXS's protocol).

GP-BO and SEIKO fit a model on the measured designs and need two of them, but a FLEXS campaign has
one: they spend round 1 on the random-mutagenesis batch (the ``random`` method's round 1 for the same
seed, so the same queries), then run ``rounds − 1`` rounds of their own, handed the start and round 1's
feasible designs (a dataset holds finite labels only). AdaLead fits nothing in round 1 (see its
docstring); the GA breeds from the start alone.

``inverse-folding``: per target (default the 20 of ``mbo.tasks.inverse_folding.RANDOM_TARGETS``) and
seed, ``--budget`` (1,000) oracle calls: ``prior`` (the best of ``budget`` samples of a diffusion prior
pretrained on the well-folded corpus of that length), ``ga`` (the GA from the task's 100 scored offline
sequences, which count, then ``(budget − 100) / 100`` rounds of 100) and ``inverse_fold`` (ViennaRNA's
``RNA.inverse_fold`` from ``--inverse-fold-runs`` random starts, one oracle call per design; it folds
thousands of candidates internally, uncounted), and ``svdd_pm``, ``svdd_rollout`` and ``refinement``
(:mod:`mbo.guidance` steering that prior by the oracle as a black box, sized by :data:`GUIDED`).
Metric: best reward and whether the target was hit (MFE structure = target), vs oracle calls.

``throughput``: oracle calls per second per problem, in-process and with a process pool.

Each run's JSON is written to ``OUT/runs/`` as soon as it finishes and skipped if present (resumable,
splittable over processes); ``--report`` aggregates what exists into ``OUT.md``, ``OUT.json`` and
``OUT.png``. Run, e.g.::

    .venv/bin/python experiments/bench_flexs.py flexs --out experiments/results/flexs
    .venv/bin/python experiments/bench_flexs.py inverse-folding --out experiments/results/inverse_folding
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from experiments.report import mean_se, plus_minus
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.constraints import constraints_from_settings
from mbo.data.dataset import SequenceDataset

# problem -> the task config group option and its overrides (defaults live in mbo/conf/task/*.yaml)
PROBLEMS = {
    "L14_RNA1": ("flexs_rna", ["task.problem=L14_RNA1"]),
    "L14_RNA1+2": ("flexs_rna", ["task.problem=L14_RNA1+2"]),
    "C20_L100_RNA1+3": ("flexs_rna", ["task.problem=C20_L100_RNA1+3"]),
    "aav_560_588": ("aav", ["task.start=560", "task.end=588"]),
    "aav_450_540": ("aav", ["task.start=450", "task.end=540"]),
}
METHODS = ("adalead", "random", "ga", "gpbo", "seiko")
LABELS = {"adalead": "AdaLead (3-MLP ensemble)", "random": "random mutagenesis",
          "ga": "genetic algorithm (holo)", "gpbo": "GP-BO (Hamming GP)",
          "seiko": "SEIKO (campaign settings)",
          "prior": "best of N prior samples", "inverse_fold": "RNA.inverse_fold (white box)",
          "svdd_pm": "SVDD-PM (oracle lookahead)", "svdd_rollout": "SVDD-RO (oracle of a rollout)",
          "refinement": "iterative refinement (SVDD-PM)"}
FOLD_METHODS = ("prior", "svdd_pm", "svdd_rollout", "refinement", "ga", "inverse_fold")
# Inference-time alignment methods (mbo.guidance) on the oracle reward, sized so that their reward
# calls (every oracle call, lookaheads and rollouts included) fit the budget: (designs, overrides of
# the method group) from (method config, L, budget). SVDD runs one design whose M candidates a
# selection fill the budget (M·K calls for K selections: every step, L, for SVDD-PM; SVDD-RO's
# ``selections`` when fewer): the best sequence is what counts, and one long search keeps what it
# learned where several short ones start over. Refinement keeps the group's settings.
def _one_search(m, length: int, budget: int) -> tuple[int, list[str]]:
    selections = m.get("selections") or length
    return 1, [f"method.candidates={max(budget // min(length, selections), 1)}"]


GUIDED = {
    "svdd_pm": _one_search,
    "svdd_rollout": _one_search,
    "refinement": lambda m, L, budget: (max(budget // (1 + m.rounds * (
        1 + m.candidates * max(round(m.remask_fraction * L), 1))), 1), []),
}


def build_task(group: str, overrides: list[str]):
    return instantiate(compose_config("config", [f"task={group}", *overrides]).task)


def problem_task(problem: str, args):
    group, overrides = PROBLEMS[problem]
    extra = [f"task.workers={args.oracle_workers}"] if group == "flexs_rna" else []
    return build_task(group, [*overrides, *extra, *args.task_override])


# ------------------------------------------------------------------------------------------ FLEXS runs
def run_flexs_method(method: str, task, initial: SequenceDataset, seed: int, args, pretrained=None):
    """The method's :class:`~mbo.active.QueryBatch` es, ``args.rounds`` of them."""
    from mbo.active import oracle_baselines as baselines
    from mbo.active.adalead import adalead
    from mbo.active.random_mutagenesis import random_mutagenesis

    common = dict(batch_size=args.batch, seed=seed, progress=args.progress)
    if method == "adalead":
        return adalead(task.oracle, initial, rounds=args.rounds, model_queries=args.model_queries, **common)
    if method == "random":
        return random_mutagenesis(task.oracle, initial, rounds=args.rounds, **common)
    if method == "ga":
        return baselines.genetic_algorithm(task.oracle, initial, rounds=args.rounds, **common)
    # Warm-up: round 1 is random mutagenesis's round 1 (same seed, so the same designs).
    first = random_mutagenesis(task.oracle, initial, rounds=1, **common)
    if args.rounds == 1:
        return first
    # A SequenceDataset holds finite labels only: round 1's infeasible designs (-inf) are left out of
    # what the method is handed (they are counted in the record all the same).
    feasible = torch.isfinite(first[0].values)
    data = SequenceDataset(torch.cat([initial.tokens, first[0].tokens[feasible]]), initial.alphabet,
                           labels=torch.cat([initial.labels.double(),
                                             first[0].values[feasible].double()]).float())
    if method == "gpbo":
        return first + baselines.gp_bo(task.oracle, data, rounds=args.rounds - 1, **common)
    if method == "seiko":
        from mbo.active import run_seiko
        from mbo.active.campaign.settings import round_options

        cfg = seiko_config(args)
        k = cfg.seiko
        return first + run_seiko(task.oracle, data, pretrained, lambda: instantiate(cfg.reward_model),
                                 instantiate(cfg.finetune), rounds=args.rounds - 1, batch_size=args.batch,
                                 kl_to=k.kl_to, infeasible=k.infeasible, seed=seed,
                                 acquisition=k.acquisition, min_distance=k.min_distance,
                                 progress=args.progress,
                                 **round_options(cfg, data.tokens, data.alphabet.size))
    raise ValueError(f"unknown method {method!r}")


def seiko_config(args):
    return compose_config("campaign", list(args.override))


def pretrained_prior(task, diffusion_cfg, cache_dir: str, progress: bool):
    from mbo.diffusion.cache import pretrained_diffusion

    model = pretrained_diffusion(task.pretrain_corpus(), task.alphabet.size, diffusion_cfg, cache_dir,
                                 name=task.name, progress=progress)
    return model.requires_grad_(False)


def constrained_prior(task, cfg, progress: bool):
    """The task's prior, sampling only what the per-position constraints allow: the campaign's own
    (``constraints.*`` overrides) and the task's required letters (C20's conserved region), as a user
    of ``mbo-campaign`` would set them. The oracle baselines are not told: FLEXS's protocol."""
    from mbo.diffusion.policy import Compose

    constraints = constraints_from_settings(cfg.constraints, task.alphabet, task.length,
                                            required=task.required_letters())
    model = pretrained_prior(task, cfg.diffusion, cfg.cache_dir, progress)
    model.policy = Compose(constraints.policy(), model.policy)
    return model


def flexs_record(method, problem, start_id, seed, initial, batches, seconds) -> dict:
    best, curve = float(initial.labels.max()), []
    for b in batches:
        finite = b.values[torch.isfinite(b.values)]
        if len(finite):
            best = max(best, float(finite.max()))
        curve.append(best)
    values = torch.cat([b.values for b in batches])
    return {"method": method, "problem": problem, "start": start_id, "seed": seed,
            "initial": float(initial.labels.max()), "best_curve": curve,
            "round_max": [float(b.values.max()) for b in batches],
            "round_sizes": [len(b.values) for b in batches], "queries": len(values),
            "feasible_fraction": float(torch.isfinite(values).double().mean()) if len(values) else 1.0,
            "unique": len(torch.unique(torch.cat([b.tokens for b in batches]), dim=0)), "seconds": seconds}


def run_flexs(args, command: str) -> None:
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for problem in args.problems:
        task = problem_task(problem, args)
        offline = task.offline_dataset()
        starts = [i for i in offline.ids if args.starts is None or _start_number(i) in args.starts]
        dropped = len(task.starting_sequences()) - len(offline)
        if dropped:
            print(f"{problem}: {dropped} published start(s) break the conserved region (infeasible, "
                  f"-inf); campaigns start from {', '.join(offline.ids)} only", flush=True)
        pretrained = None
        for seed in args.seeds:
            for start_id in starts:
                for method in args.methods:
                    path = runs / f"{method}__{problem}__{start_id}__seed{seed}.json"
                    if path.exists():
                        continue
                    if method == "seiko" and pretrained is None:
                        pretrained = constrained_prior(task, seiko_config(args), args.progress)
                    initial = offline.subset([offline.ids.index(start_id)])
                    t0 = time.perf_counter()
                    batches = run_flexs_method(method, task, initial, seed, args, pretrained)
                    rec = flexs_record(method, problem, start_id, seed, initial, batches,
                                       time.perf_counter() - t0)
                    rec.update(command=command, rounds=args.rounds, batch=args.batch,
                               model_queries=args.model_queries, overrides=args.override,
                               threads=torch.get_num_threads())
                    atomic_write_text(path, json.dumps(rec))
                    print(f"{problem} {start_id} seed {seed} {method}: {rec['initial']:.3f} -> "
                          f"{rec['best_curve'][-1]:.3f} ({rec['seconds']:.0f} s)", flush=True)
        if hasattr(task, "close"):
            task.close()


def _machine(runs: list[dict]) -> str:
    # Runs made before each recorded its threads all used 1.
    threads = ", ".join(str(t) for t in sorted({r.get("threads", 1) for r in runs}))
    return (f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"threads per run {threads}.")


def _start_number(start_id: str) -> int:
    """1-based start number of an offline id (``start_3`` -> 3, AAV's ``wild_type`` -> 1)."""
    return 1 if start_id == "wild_type" else int(start_id.rsplit("_", 1)[1])


def report_flexs(out: Path, command: str) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    table: dict[str, dict[str, dict]] = {}
    for problem in PROBLEMS:
        for method in METHODS:
            rs = [r for r in runs if r["problem"] == problem and r["method"] == method]
            if not rs:
                continue
            rounds = min(len(r["best_curve"]) for r in rs)
            curves = [[r["initial"], *r["best_curve"][:rounds]] for r in rs]
            table.setdefault(problem, {})[method] = {
                "runs": len(rs), "starts": sorted({r["start"] for r in rs}),
                "seeds": sorted({r["seed"] for r in rs}), "rounds": rounds,
                "curve": [mean_se([c[i] for c in curves]) for i in range(rounds + 1)],
                "feasible": mean_se([r["feasible_fraction"] for r in rs]),
                "seconds": mean_se([r["seconds"] for r in rs]),
            }
    settings = sorted({(r["rounds"], r["batch"], r["model_queries"]) for r in runs})
    lines = ["# FLEXS protocol: RNA binding and AAV", "", f"Command: `{command}`", "",
             "Runs aggregated (each run's JSON keeps its command):", "",
             *sorted({f"- `{r['command']}`" for r in runs}), "",
             "One campaign per (problem, start, seed): the start measured, then "
             + "; ".join(f"{a} rounds of {b} oracle queries (≤ {c:,} model predictions per round)"
                         for a, b, c in settings)
             + " (the cap binds AdaLead; SEIKO's fine-tuning and pool scoring evaluate its reward model on "
             "far more sequences a round, as the method does). Cells: best true fitness so far, mean ± "
             "standard error over starts × seeds; round 0 is "
             "the start. GP-BO and SEIKO spend round 1 on random mutagenesis (they need two measurements "
             "to fit a model). 'feasible queries': the fraction the oracle scored finite (C20: the "
             "conserved region kept).", ""]
    for problem, methods in table.items():
        some = next(iter(methods.values()))
        picks = sorted({1, min(5, some["rounds"]), some["rounds"]})
        lines += [f"## {problem}", "",
                  "| method | runs | start | " + " | ".join(f"round {i}" for i in picks)
                  + " | feasible queries | s per run |", "|---|---|---|" + "---|" * len(picks) + "---|---|"]
        for method, row in methods.items():
            cells = [plus_minus(row["curve"][i]) if i < len(row["curve"]) else "–" for i in picks]
            lines.append(f"| {LABELS[method]} | {row['runs']} | {row['curve'][0][0]:.3f} | "
                         + " | ".join(cells) + f" | {plus_minus(row['feasible'])} | "
                         f"{row['seconds'][0]:.0f} |")
        lines.append("")
    lines += [_machine(runs), ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines), overwrite=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"command": command, "problems": table}, indent=1),
                      overwrite=True)
    _plot(out, {p: {m: r["curve"] for m, r in ms.items()} for p, ms in table.items()}, "round",
          "best true fitness so far")
    print("\n".join(lines))
    return table


# -------------------------------------------------------------------------------- inverse folding
def fold_record(method, target, seed, values: torch.Tensor, solved: torch.Tensor, seconds, budget) -> dict:
    """Best reward after each block of 100 oracle calls, and the call that first hit the target."""
    best = torch.cummax(values.double(), 0).values
    marks = [n for n in range(100, budget + 1, 100) if n <= len(values)] or [len(values)]
    hit = solved.nonzero()
    return {"method": method, "target": target, "seed": seed, "calls": len(values),
            "marks": marks, "best_at": [float(best[n - 1]) for n in marks],
            "best": float(best[-1]), "solved": bool(solved.any()),
            "first_hit": int(hit[0, 0]) + 1 if len(hit) else None, "seconds": seconds}


def run_fold_method(method: str, task, seed: int, args, prior=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The designs the method spent its oracle calls on, in order: tokens ``(n, L)``, rewards ``(n,)``."""
    from mbo.tasks.inverse_folding import inverse_fold_baseline

    if method == "prior":
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            x = prior.sample(args.budget, generator=gen).cpu()
        return x, task.oracle(x)
    if method in GUIDED:
        return run_guided(method, task, seed, args, prior)
    if method == "ga":
        from mbo.active.oracle_baselines import genetic_algorithm

        offline = task.offline_dataset()
        rounds = max((args.budget - len(offline)) // 100, 0)
        batches = genetic_algorithm(task.oracle, offline, rounds=rounds, batch_size=100, seed=seed)
        x = torch.cat([offline.tokens, *(b.tokens for b in batches)])
        return x, torch.cat([offline.labels.double(), *(b.values.double() for b in batches)])
    if method == "inverse_fold":
        x, _ = inverse_fold_baseline(task, args.inverse_fold_runs, seed=seed)
        return x, task.oracle(x)
    raise ValueError(f"unknown inverse-folding method {method!r}")


def run_guided(method: str, task, seed: int, args, prior) -> tuple[torch.Tensor, torch.Tensor]:
    """An inference-time method steering ``prior`` by the oracle itself: every sequence the oracle scored
    (lookaheads and rollouts included) is a measurement, in call order, cut at the budget; designs per
    run and the settings that fill the budget from :data:`GUIDED`."""
    cfg = compose_config("config", [f"method={method}", *args.override]).method
    n, sized = GUIDED[method](cfg, task.length, args.budget)
    cfg = compose_config("config", [f"method={method}", *args.override, *sized]).method
    scored: list[tuple[torch.Tensor, torch.Tensor]] = []

    def reward(x: torch.Tensor) -> torch.Tensor:
        tokens = x.argmax(-1).cpu()
        values = task.oracle(tokens).double()
        scored.append((tokens, values))
        return values.to(x.device, x.dtype)

    with torch.no_grad():
        instantiate(cfg)(prior, reward, n, generator=torch.Generator().manual_seed(seed))
    x = torch.cat([t for t, _ in scored])[:args.budget]
    return x, torch.cat([v for _, v in scored])[:args.budget]


def run_inverse_folding(args, command: str) -> None:
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    diffusion_cfg = compose_config("config", list(args.override)).diffusion
    cache_dir = compose_config("config", []).cache_dir
    priors: dict[int, object] = {}
    for target in args.targets:
        key = int(target) if str(target).isdigit() else target
        task = build_task("inverse_folding", [f"task.target={json.dumps(key)}",
                                              f"task.workers={args.oracle_workers}", *args.task_override])
        for seed in args.seeds:
            for method in args.fold_methods:
                path = runs / f"{method}__{task.label}__seed{seed}.json"
                if path.exists():
                    continue
                if method in ("prior", *GUIDED) and task.length not in priors:
                    priors[task.length] = pretrained_prior(task, diffusion_cfg, cache_dir, args.progress)
                t0 = time.perf_counter()
                x, values = run_fold_method(method, task, seed, args, priors.get(task.length))
                rec = fold_record(method, task.label, seed, values, task.is_solved(x),
                                  time.perf_counter() - t0, args.budget)
                rec.update(command=command, structure=task.target, length=task.length,
                           threads=torch.get_num_threads())
                atomic_write_text(path, json.dumps(rec))
                print(f"{task.label} seed {seed} {method}: best {rec['best']:.3f}, solved {rec['solved']} "
                      f"({rec['calls']} calls, {rec['seconds']:.0f} s)", flush=True)
        task.close()


def report_inverse_folding(out: Path, command: str) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    table: dict[str, dict] = {}
    for method in FOLD_METHODS:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        n_marks = min(len(r["marks"]) for r in rs)
        hits = [r["first_hit"] for r in rs if r["first_hit"] is not None]
        table[method] = {"runs": len(rs), "targets": len({r["target"] for r in rs}),
                         "calls": mean_se([r["calls"] for r in rs]),
                         "marks": rs[0]["marks"][:n_marks],
                         "curve": [mean_se([r["best_at"][i] for r in rs]) for i in range(n_marks)],
                         "best": mean_se([r["best"] for r in rs]),
                         "solved": sum(r["solved"] for r in rs) / len(rs),
                         "median_first_hit": sorted(hits)[len(hits) // 2] if hits else None,
                         "seconds": mean_se([r["seconds"] for r in rs])}
    lines = ["# RNA inverse folding", "", f"Command: `{command}`", "",
             "Runs aggregated:", "", *sorted({f"- `{r['command']}`" for r in runs}), "",
             "Reward 1 − bp_distance(MFE, target)/L (ViennaRNA); solved = MFE structure equals the target. "
             "Mean ± standard error over targets × seeds. `RNA.inverse_fold` folds candidates internally "
             "(uncounted); its oracle calls are its returned designs.", "",
             "| method | runs | targets | oracle calls | best reward | solved | median calls to solve | "
             "s per run |", "|---|---|---|---|---|---|---|---|"]
    for method, row in table.items():
        lines.append(f"| {LABELS[method]} | {row['runs']} | {row['targets']} | {row['calls'][0]:.0f} | "
                     f"{plus_minus(row['best'])} | {row['solved']:.2f} | {row['median_first_hit'] or '–'} | "
                     f"{row['seconds'][0]:.0f} |")
    lines += ["", _machine(runs), ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines), overwrite=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"command": command, "methods": table}, indent=1),
                      overwrite=True)
    _plot(out, {"inverse folding": {m: r["curve"] for m, r in table.items()}}, "oracle calls / 100",
          "best reward so far", x_start=1)
    print("\n".join(lines))
    return table


# ------------------------------------------------------------------------------------- throughput
def run_throughput(args) -> dict:
    """Oracle calls per second, in-process and with ``--oracle-workers`` processes."""
    from mbo.tasks.mutants import random_mutants

    sizes = {"L14_RNA1": 1000, "L14_RNA1+2": 500, "C20_L100_RNA1+3": 100, "aav_560_588": 10000,
             "aav_450_540": 10000}
    out = {}
    for problem in args.problems:
        group, overrides = PROBLEMS[problem]
        for workers in sorted({1, args.oracle_workers}):
            if group == "aav" and workers > 1:
                continue  # vectorized table lookups: no pool
            extra = [f"task.workers={workers}", "task.parallel_min=1"] if group == "flexs_rna" else []
            task = build_task(group, [*overrides, *extra, "task.corpus_size=10"])
            x = random_mutants(task.offline_dataset().tokens, sizes[problem], task.max_mutations,
                               task.alphabet.size, torch.Generator().manual_seed(0))
            task.oracle(x[:2])  # start the pool, if any
            t0 = time.perf_counter()
            task.oracle(x)
            rate = len(x) / (time.perf_counter() - t0)
            out[f"{problem} workers={workers}"] = rate
            print(f"{problem:18s} L={task.length:3d} workers={workers}: {rate:10.1f} sequences/s", flush=True)
            if hasattr(task, "close"):
                task.close()
    return out


def _plot(out: Path, panels: dict[str, dict[str, list]], xlabel: str, ylabel: str, x_start: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4 * max(len(panels), 1), 3.4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items(), strict=False):
        for method, curve in curves.items():
            x = list(range(x_start, x_start + len(curve)))
            m = [c[0] for c in curve]
            se = [0.0 if math.isnan(c[1]) else c[1] for c in curve]
            ax.plot(x, m, marker="o", ms=3, label=LABELS[method])
            ax.fill_between(x, [a - b for a, b in zip(m, se, strict=True)],
                            [a + b for a, b in zip(m, se, strict=True)], alpha=0.1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="bench", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    common.add_argument("--override", action="append", default=[],
                        help="settings override: the campaign config (flexs: SEIKO) or the mbo-run config "
                             "(inverse-folding: its diffusion prior), e.g. diffusion.pretrain.steps=200")
    common.add_argument("--task-override", action="append", default=[], help="e.g. task.corpus_size=1000")
    common.add_argument("--oracle-workers", type=int, default=1, help="ViennaRNA scoring processes per task")
    common.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (the committed runs used 1, two runs at a time on 2 cores)")
    common.add_argument("--progress", action="store_true")
    flexs = sub.add_parser("flexs", parents=[common], help="the FLEXS protocol")
    flexs.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    flexs.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    flexs.add_argument("--starts", nargs="+", type=int, default=None, help="start numbers (default all)")
    flexs.add_argument("--rounds", type=int, default=10)
    flexs.add_argument("--batch", type=int, default=100)
    flexs.add_argument("--model-queries", type=int, default=2000)
    fold = sub.add_parser("inverse-folding", parents=[common], help="RNA inverse folding")
    fold.add_argument("--targets", nargs="+", default=[str(i) for i in range(20)],
                      help="indices of RANDOM_TARGETS, eterna100:<puzzle> or dot-brackets")
    fold.add_argument("--fold-methods", nargs="+", default=list(FOLD_METHODS), choices=FOLD_METHODS)
    fold.add_argument("--budget", type=int, default=1000)
    fold.add_argument("--inverse-fold-runs", type=int, default=20)
    thr = sub.add_parser("throughput", parents=[common], help="oracle sequences per second")
    thr.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    for parser in (flexs, fold):
        parser.add_argument("--out", type=Path, required=True,
                            help="results prefix: OUT.md, OUT.json, OUT.png, OUT/runs/")
        parser.add_argument("--report", action="store_true", help="only aggregate existing runs")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python experiments/bench_flexs.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.bench == "throughput":
        run_throughput(args)
    elif args.bench == "flexs":
        if not args.report:
            run_flexs(args, command)
        report_flexs(args.out, command)
    else:
        if not args.report:
            run_inverse_folding(args, command)
        report_inverse_folding(args.out, command)


if __name__ == "__main__":
    main()
