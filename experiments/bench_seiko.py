"""Benchmark: batch active learning on Ehrlich functions — SEIKO against GA, GP-BO and random sampling.

Every method starts from the same ``--initial`` measured designs (a seed-dependent draw from the
task's low-scoring offline split) and spends ``--rounds`` × ``--batch`` oracle queries. Reported: best
true score found vs number of queries, the fraction of queries that were feasible, and how many seeds
reached the optimum (1.0). Methods:

- ``seiko_ucb``: SEIKO with a CNN deep ensemble, optimistic reward mean + c·std, qUCB plates;
- ``seiko_boot``: SEIKO with a CNN bootstrap ensemble, optimism c·std, Thompson-sampling plates;
- ``greedy``: the same loop as ``seiko_ucb`` with c = 0 (fine-tunes on the mean, greedy plates);
- ``ga``: holo-bench's genetic algorithm (``DiscreteEvolution``), population = batch size;
- ``gpbo``: GP-BO, Hamming-kernel GP with ``optimize_acqf_discrete_local_search``;
- ``random``: unmeasured samples of the pretrained diffusion model.

Each (method, seed) result is written to ``OUT/runs/<method>_seed<k>.json`` as soon as it finishes
and skipped if present, so methods can be split over processes and an interrupted run resumes;
``--report`` (alone or after a run) aggregates whatever exists into ``OUT.md`` / ``OUT.json`` / PNG.

Settings are a campaign's (``mbo-campaign``'s ``campaign`` config of :mod:`mbo.conf`, with
``--override KEY=VALUE`` on top); each SEIKO variant adds the overrides in :data:`SEIKO`.

Run, e.g.: ``.venv/bin/python experiments/bench_seiko.py --task-arg length=32 --seeds 0 1 2
--methods seiko_ucb greedy --out experiments/results/seiko_ehrlich_l32``.
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

import torch
from hydra.utils import instantiate

from experiments.report import mean_se, plus_minus
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.data.dataset import SequenceDataset
from mbo.designs import unique_designs
from mbo.diffusion.cache import pretrained_diffusion
from mbo.diffusion.masked import MaskedDiffusion

METHODS = ("seiko_ucb", "seiko_boot", "greedy", "ga", "gpbo", "random")
LABELS = {"seiko_ucb": "SEIKO (UCB, CNN ensemble)", "seiko_boot": "SEIKO (bootstrap, Thompson)",
          "greedy": "greedy loop (c = 0)", "ga": "genetic algorithm (holo)",
          "gpbo": "GP-BO (Hamming GP, local search)", "random": "random pretrained samples"}


def load_config(task_args: list[str], overrides: list[str], method: str = "seiko_ucb"):
    """The campaign settings for ``method`` (see :data:`SEIKO`), and the Ehrlich task's config."""
    cfg = compose_config("campaign", [*SEIKO.get(method, []), *overrides])
    task_cfg = compose_config("config", ["task=ehrlich", *[f"task.{a}" for a in task_args]]).task
    return cfg, task_cfg


# Each SEIKO variant: overrides of the campaign settings.
SEIKO = {"seiko_ucb": [],
         "seiko_boot": ["reward_model._target_=reward_models.BootstrapEnsemble",
                        "seiko.acquisition=thompson"],
         "greedy": ["seiko.c=0.0"]}


def run_method(method: str, seed: int, cfg, task, pretrained, initial: SequenceDataset, args):
    from mbo.active import QueryBatch, run_seiko, unmeasured
    from mbo.active.campaign.settings import round_options

    if method in SEIKO:
        k = cfg.seiko
        return run_seiko(task.oracle, initial, pretrained, lambda: instantiate(cfg.reward_model),
                         instantiate(cfg.finetune), rounds=args.rounds, batch_size=args.batch,
                         kl_to=k.kl_to, infeasible=k.infeasible, seed=seed, acquisition=k.acquisition,
                         min_distance=k.min_distance, progress=args.progress,
                         **round_options(cfg, initial.tokens, initial.alphabet.size))
    if method == "random":
        gen = torch.Generator().manual_seed(seed)
        measured, out = initial.tokens, []
        for _ in range(args.rounds):
            with torch.no_grad():
                pool = pretrained.sample(4 * args.batch, generator=gen)
            tokens = unmeasured(pool.cpu(), measured)[: args.batch]
            out.append(QueryBatch(tokens=tokens, values=task.oracle(tokens).float()))
            measured = torch.cat([measured, tokens])
        return out
    from mbo.active import oracle_baselines as baselines

    fn = {"ga": baselines.genetic_algorithm, "gpbo": baselines.gp_bo}[method]
    return fn(task.oracle, initial, rounds=args.rounds, batch_size=args.batch, seed=seed,
              progress=args.progress)


def initial_designs(task, n: int, seed: int, homologs: float | None = None,
                    pretrained: MaskedDiffusion | None = None) -> SequenceDataset:
    """``n`` measured starting designs: a seed's draw from the offline data, or with ``homologs`` a
    library of homologs of its first design (each position re-drawn by ``pretrained`` with probability
    ``homologs``; the feasible, distinct ones, the parent first), scored by the oracle."""
    offline = task.offline_dataset()
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(offline), generator=gen)[:n]
    if homologs is None:
        return offline.subset(rows)
    parent = offline.tokens[rows[:1]]
    x = parent.repeat(4 * n, 1)  # more than n: infeasible and repeated ones are dropped
    x[torch.rand(x.shape, generator=gen) < homologs] = pretrained.mask_id
    x[0] = parent[0]
    drawn = pretrained.sample(len(x), x_start=x, generator=gen).cpu()
    tokens = unique_designs(lambda _: drawn, len(drawn), max_draws=1)[0]  # in the order drawn: parent first
    labels = task.oracle(tokens)
    keep = torch.isfinite(labels)
    return SequenceDataset(tokens[keep][:n], offline.alphabet, labels[keep][:n])


def record(method: str, seed: int, initial: SequenceDataset, batches, seconds: float) -> dict:
    from mbo.active import best_so_far
    from mbo.active.seiko import spread

    init_best = float(initial.labels.max())
    curve = best_so_far(init_best, batches)
    values = torch.cat([b.values for b in batches])
    n_queries, feasible = len(values), int(torch.isfinite(values).sum())
    first_solved = next((i + 1 for i, c in enumerate(curve) if c >= 1.0), None)
    return {"method": method, "seed": seed, "initial_best": init_best, "best_curve": curve,
            "initial_size": len(initial), "initial_spread": spread(initial.tokens, initial.alphabet.size),
            "round_sizes": [len(b.values) for b in batches],
            "feasible_per_round": [float(torch.isfinite(b.values).float().mean()) for b in batches],
            "queries": n_queries, "feasible_fraction": feasible / max(n_queries, 1),
            "solved_round": first_solved, "seconds": seconds,
            "unique": len(torch.unique(torch.cat([b.tokens for b in batches]), dim=0))}


def recorded_setting(runs: list[dict], today: str) -> str:
    """The setting line the runs recorded when they ran, not one rebuilt from today's config (which a
    changed default would silently rewrite); runs made before settings were recorded fall back to
    ``today``, said so."""
    settings = sorted({r["setting"] for r in runs if "setting" in r})
    if not settings:
        return f"{today} (rebuilt from the settings at report time: these runs did not record theirs)"
    if len(settings) == 1 and all("setting" in r for r in runs):
        return settings[0]
    by = {s: sorted(f"{r['method']} seed {r['seed']}" for r in runs if r.get("setting") == s)
          for s in settings}
    older = sorted(f"{r['method']} seed {r['seed']}" for r in runs if "setting" not in r)
    return "the runs differ: " + "; ".join(f"{s} ({', '.join(v)})" for s, v in by.items()) + (
        f"; not recorded ({', '.join(older)})" if older else "")


def report(out: Path, command: str, meta: dict) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    table: dict[str, dict] = {}
    for method in METHODS:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        rounds = min(len(r["best_curve"]) for r in rs)
        curve = [mean_se([r["best_curve"][i] for r in rs]) for i in range(rounds)]
        table[method] = {
            "seeds": sorted(r["seed"] for r in rs), "rounds": rounds,
            "best_curve_mean": [c[0] for c in curve], "best_curve_se": [c[1] for c in curve],
            "final_best": mean_se([r["best_curve"][rounds - 1] for r in rs]),
            "feasible": mean_se([r["feasible_fraction"] for r in rs]),
            "solved": sum(r["solved_round"] is not None for r in rs),
            "solved_rounds": [r["solved_round"] for r in rs],
            "seconds": statistics.fmean(r["seconds"] for r in rs),
            "initial_best": mean_se([r["initial_best"] for r in rs]),
            "queries_per_round": rs[0]["round_sizes"][0],
        }
    meta = {**meta, "setting": recorded_setting(runs, meta.get("setting", ""))}
    # A report-only call names the task its --task-arg builds; the runs know which one they ran on.
    ran_on = sorted({r["task"] for r in runs if "task" in r})
    if ran_on:
        meta["task"] = ", ".join(ran_on)
    lines = [f"# {meta.get('title', 'Batch active learning on Ehrlich')}", "",
             f"Command: `{command}`", "",
             "The runs it aggregates were produced by (each run's JSON in the runs folder keeps its "
             "command):", "", *sorted({f"- `{r['command']}`" for r in runs}), "",
             f"Task: `{meta.get('task')}`; {meta['setting']}", "",
             "| method | seeds | best after 100 / 300 / 500 / 1000 queries | final best | "
             "feasible queries | solved (1.0) | s per seed |", "|---|---|---|---|---|---|---|"]
    for method, row in table.items():
        q = row["queries_per_round"]
        picks = []
        for n in (100, 300, 500, 1000):
            i = n // q - 1
            picks.append(f"{row['best_curve_mean'][i]:.3f}" if 0 <= i < row["rounds"] else "–")
        lines.append(f"| {LABELS[method]} | {len(row['seeds'])} | {' / '.join(picks)} | "
                     f"{plus_minus(row['final_best'])} | {plus_minus(row['feasible'])} | "
                     f"{row['solved']}/{len(row['seeds'])} | "
                     f"{row['seconds']:.0f} |")
    if table:
        ib = {r["seed"]: r["initial_best"] for r in runs}
        lines += ["", "Best of the initial designs per seed: "
                  + ", ".join(f"seed {k}: {v:.3f}" for k, v in sorted(ib.items()))
                  + ". Compare methods on the same seeds. ± is the standard error "
                  "over seeds. 'feasible queries' is the fraction of all queries the oracle scored "
                  "finite (not −inf)."]
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, torch "
              f"{torch.__version__}, threads {torch.get_num_threads()}.", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines), overwrite=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "methods": table}, indent=1),
                      overwrite=True)
    plot(out, table)
    print("\n".join(lines))
    return table


def plot(out: Path, table: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, row in table.items():
        q = row["queries_per_round"]
        x = [q * (i + 1) for i in range(row["rounds"])]
        m, se = row["best_curve_mean"], row["best_curve_se"]
        ax.plot(x, m, marker="o", ms=3, label=LABELS[method])
        if len(row["seeds"]) > 1:
            ax.fill_between(x, [a - b for a, b in zip(m, se, strict=True)],
                            [a + b for a, b in zip(m, se, strict=True)], alpha=0.2)
    ax.set_xlabel("oracle queries")
    ax.set_ylabel("best true score found")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task-arg", action="append", default=[], help="Ehrlich argument, e.g. length=64")
    p.add_argument("--override", action="append", default=[], help="campaign settings override")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--initial", type=int, default=100)
    p.add_argument("--homologs", type=float, default=None,
                   help="start from a homolog library instead: one offline design and variants of it, each "
                        "position re-drawn by the prior with this probability")
    p.add_argument("--out", type=Path, required=True, help="results prefix (OUT.md, OUT.json, OUT/runs/)")
    p.add_argument("--report", action="store_true", help="only aggregate existing runs")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "python experiments/bench_seiko.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    cfg, task_cfg = load_config(args.task_arg, args.override)
    ft, k = cfg.finetune, cfg.seiko
    tuning = (f"{ft.iterations} fine-tuning iterations/round, α = {ft.alpha}, KL to the "
              + ("previous round's model" if k.kl_to == "previous" else "pretrained model")
              if ft.iterations else "no fine-tuning (the pool comes from the pretrained model)")
    # The pool method's own settings too: two runs at different scales must not read the same.
    steered = (f" steered by {k.pool._target_.rsplit('.', 1)[-1]} ("
               + ", ".join(f"{key} = {v}" for key, v in k.pool.items() if not key.startswith("_"))
               + ")" if k.get("pool") else "")
    start = ("" if args.homologs is None else
             f" (homologs: one offline design and variants, each position re-drawn with probability "
             f"{args.homologs})")
    meta = {"task": None, "setting": (f"{args.initial} initial designs{start}, {args.rounds} rounds × "
                                      f"{args.batch} queries; SEIKO: {tuning}; pool {k.pool_size}{steered}, "
                                      f"local share {k.local.fraction}"
                                      + (f"; trust region: at most {k.max_unseen} unseen (position, token) "
                                         f"pairs" if k.get("max_unseen") is not None else "")
                                      + (f" while the initial designs' spread is below "
                                         f"{k.max_unseen_below_spread}" if k.get("max_unseen") is not None
                                         and k.get("max_unseen_below_spread") is not None else "")),
            "overrides": args.override}
    if not args.report:
        task = instantiate(task_cfg)
        meta["task"] = task.name
        pretrained = pretrained_diffusion(task.pretrain_corpus(), task.alphabet.size, cfg.diffusion,
                                          cfg.cache_dir, name=task.name, progress=args.progress)
        pretrained.requires_grad_(False)
        for seed in args.seeds:
            for method in args.methods:
                path = args.out / "runs" / f"{method}_seed{seed}.json"
                if path.exists():
                    continue
                initial = initial_designs(task, args.initial, seed, args.homologs, pretrained)
                start = time.perf_counter()
                method_cfg, _ = load_config(args.task_arg, args.override, method)
                batches = run_method(method, seed, method_cfg, task, pretrained, initial, args)
                rec = record(method, seed, initial, batches, time.perf_counter() - start)
                rec["command"], rec["setting"], rec["task"] = command, meta["setting"], task.name
                atomic_write_text(path, json.dumps(rec))
                print(f"{method} seed {seed}: best {rec['best_curve'][-1]:.3f}, feasible "
                      f"{rec['feasible_fraction']:.3f}, {rec['seconds']:.0f} s; {rec['initial_size']} "
                      f"initial designs, spread {rec['initial_spread']:.2f}", flush=True)
    if meta["task"] is None:  # report only: the name is cheap (the task's data are built lazily)
        meta["task"] = instantiate(task_cfg).name
    report(args.out, command, meta)


if __name__ == "__main__":
    main()
