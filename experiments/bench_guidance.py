"""Benchmark: inference-time alignment of a pretrained masked diffusion model at equal reward calls.

Methods (:mod:`mbo.guidance`, settings from the ``method`` config group): Best-of-N, SVDD-PM, SVDD-RO,
SVDD-MC, SMC, gradient guidance, iterative refinement; plus plain pretrained samples and, on TFBind8, the
reward's exhaustive-search ceiling (its top ``n`` of all 65,536 8-mers). Three variants:
``svdd_rollout_final`` returns each SVDD-RO design's own final state (``method.keep=final``) where
``svdd_rollout`` returns the n best distinct completions of the whole run (the default);
``best_of_n_pool`` keeps the n best distinct of Best-of-N's n·N samples as one pool rather than the best
of each design's N; ``svdd_rollout_every_step`` selects at every sampler step
(``method.selections=null``) where the default selects at a fixed number of steps. Each proposes ``n``
designs (default 128) scored by the task's ground truth. Settings (``--settings``):

- ``tfbind8_mean``: TFBind8 (Design-Bench offline bottom half); reward = the app's reward model (MLP
  deep ensemble; :data:`~experiments.settings.TFBIND8_GENERAL`) mean;
- ``tfbind8_conservative``: the same ensemble's conservative reward (the app's ``conservative`` group,
  mean − c·std);
- ``ehrlich_mean``: offline Ehrlich (``task=ehrlich reward_model=conv_ensemble``),
  reward = the CNN ensemble's mean;
- ``ehrlich_oracle``: the Ehrlich function itself as a black-box reward (not differentiable: no
  gradient guidance), infeasible (−inf) mapped to :data:`INFEASIBLE` for the methods; the table
  reports the raw oracle.

Budget. SVDD-PM with M candidates (``--candidates``, default the method group's) and a sampler of S steps
(``--sampler``; the first-hitting sampler's S = L makes every budget exact) spends at most B = 1 + n·M·S
reward calls. Every other method gets the setting that spends at most that: Best-of-N N = M·S, SVDD-RO
M·S/K candidates for its K = min(selections, S) selections (n·M·S), SMC K = M, SVDD-MC rollouts = B − n,
refinement the most rounds R (at least 1) with n + R·n·(1 + M·m) ≤ B (m re-masked positions, so m steps,
a round; S with a grid, where one round's bound, n·(1 + M·S), already passes B's, so it runs one round
and its column says what that cost). Gradient guidance is the exception: one reward gradient per design
per step, n·(S + 1) calls. With a grid sampler the SVDD/SMC/refinement counts are upper bounds (a
candidate that unmasks nothing is free); the tables report the calls actually made.

Rewards reach the methods in units of the offline labels' std (``ScaledReward``), as mbo-run's
fine-tuning gets them, so the method group's α means the same on every task; the "reward" column is
in the reward's own units.

Scaling (``--scaling``): wall time and calls vs n (at L = 32) and vs L (32, 64, 128 at fixed n) on
Ehrlich with the CNN ensemble mean, each method of ``--scaling-methods`` at its config defaults (one
seed; the pretrained model of each length is trained for ``--scaling-pretrain-steps`` only: cost does not
depend on it).

Each (setting, method, seed) result is written to ``OUT/runs/<setting>__<method>__seed<k>.json`` as
soon as it finishes and skipped if present (methods and seeds can be split over processes; an
interrupted run resumes); scaling points go to ``OUT/runs/scaling__L<L>__n<n>__<method>.json``.
``--report`` (alone or after a run) aggregates whatever exists into ``OUT.md`` and ``OUT.json``.

Run: ``.venv/bin/python experiments/bench_guidance.py --seeds 0 1 2 --scaling
--out experiments/results/guidance``.
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
from omegaconf import OmegaConf
from torch import Tensor

from conservative import ScaledReward, label_scale
from experiments.report import mean_se, plus_minus
from experiments.run import conservative_reward
from experiments.settings import EHRLICH_GENERAL, TFBIND8_GENERAL
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.device import resolve_device
from mbo.diffusion.cache import pretrained_diffusion
from mbo.diffusion.samplers import FirstHittingSampler, Sampler, get_sampler
from mbo.evaluate import evaluate_designs
from mbo.guidance.base import best_distinct
from mbo.reward_optimizers import exhaustive_search

RESULTS = Path(__file__).parent / "results"

SETTINGS = {"tfbind8_mean": TFBIND8_GENERAL, "tfbind8_conservative": TFBIND8_GENERAL,
            "ehrlich_mean": EHRLICH_GENERAL, "ehrlich_oracle": EHRLICH_GENERAL}
# Method name -> option of the `method` config group (None: not a guidance method).
METHODS = {"pretrained": "best_of_n", "best_of_n": "best_of_n", "best_of_n_pool": "best_of_n",
           "svdd_pm": "svdd_pm", "svdd_rollout": "svdd_rollout", "svdd_rollout_final": "svdd_rollout",
           "svdd_rollout_every_step": "svdd_rollout",
           "svdd_mc": "svdd_mc", "smc": "smc", "gradient": "gradient", "refinement": "refinement",
           "exhaustive": None}
LABELS = {"pretrained": "pretrained samples", "best_of_n": "Best-of-N",
          "best_of_n_pool": "Best-of-N, top n of one pool", "svdd_pm": "SVDD-PM",
          "svdd_rollout": "SVDD-RO (rollout value)",
          "svdd_rollout_final": "SVDD-RO, each design's final state",
          "svdd_rollout_every_step": "SVDD-RO, a selection at every step",
          "svdd_mc": "SVDD-MC", "smc": "SMC", "gradient": "gradient guidance",
          "refinement": "iterative refinement (SVDD)", "exhaustive": "exhaustive search (ceiling)"}
# Variants: the method group's option with these overrides on top of its defaults.
VARIANTS = {"svdd_rollout_final": ["method.keep=final"],
            "svdd_rollout_every_step": ["method.selections=null"]}
SCALING_METHODS = ["best_of_n", "svdd_pm", "svdd_rollout", "svdd_mc", "smc", "gradient", "refinement"]

INFEASIBLE = -1.0
"""The oracle's −inf (infeasible) as the methods see it: one full score range below the worst
feasible sequence (Ehrlich scores lie in [0, 1]), finite so rewards can be compared and weighted."""

COLUMNS = [("true_p100", "true p100"), ("true_p50", "true p50"), ("true_mean", "true mean"),
           ("unique", "unique"), ("feasible", "feasible"), ("diversity", "diversity"), ("novelty", "novelty"),
           ("naturalness", "ELBO"), ("reward_mean", "reward"), ("reward_calls", "reward calls"),
           ("network_calls", "network calls"), ("seconds", "wall s")]


# ------------------------------------------------------------------------------------------- setup
class OracleReward:
    """The task's true score as a reward on one-hots ``(B, L, V) -> (B,)``; −inf -> :data:`INFEASIBLE`."""

    def __init__(self, task):
        self.task = task

    def __call__(self, x: Tensor) -> Tensor:
        y = self.task.oracle(x.argmax(-1)).float()
        return torch.where(torch.isfinite(y), y, INFEASIBLE)


class Problem:
    """A task with its pretrained model, and reward models fitted per seed (built once, on demand)."""

    def __init__(self, overrides: list[str], progress: bool):
        self.overrides = overrides
        self.cfg = compose_config("config", overrides)
        self.device = resolve_device(self.cfg.device)
        self.task = instantiate(self.cfg.task)
        self.offline = self.task.offline_dataset()
        self.pretrained = pretrained_diffusion(self.task.pretrain_corpus(), self.task.alphabet.size,
                                               self.cfg.diffusion, self.cfg.cache_dir, name=self.task.name,
                                               device=self.device, progress=progress)
        self.pretrained.requires_grad_(False)
        self.scale = label_scale(self.offline.labels)
        self._models: dict[int, tuple] = {}

    def reward_model(self, seed: int):
        """``(model, seconds to fit)``, fitted on the offline data with ``seed``."""
        if seed not in self._models:
            t = time.perf_counter()
            model = instantiate(self.cfg.reward_model, device=str(self.device)).fit(self.offline, seed=seed)
            model.eval()
            self._models[seed] = (model, time.perf_counter() - t)
        return self._models[seed]

    def reward(self, setting: str, seed: int):
        """``(raw reward, reward model or None, fit seconds)`` of a setting."""
        if setting.endswith("_oracle"):
            return OracleReward(self.task), None, 0.0
        model, fit_s = self.reward_model(seed)
        if setting.endswith("_conservative"):
            reward = conservative_reward(self.cfg, model, self.pretrained, self.offline, self.device)[0]
        else:
            reward = instantiate(self.cfg.conservative, c=0.0)(model)
        return reward, model, fit_s


def method_settings(method: str, n: int, length: int, m: int, sampler: Sampler | None = None) -> list[str]:
    """Overrides of the method group that give ``method`` at most SVDD-PM's reward calls, 1 + n·M·S.

    Args:
        method: a key of :data:`METHODS`.
        n: designs; length: L; m: SVDD-PM's candidates M.
        sampler: the run's sampler (None: first-hitting); S = its steps for a length-L sequence. (With
            S = L for every sampler, a 4-step grid gave Best-of-N N = M·L: 8 times SVDD-PM's calls.)
    """
    sampler = FirstHittingSampler() if sampler is None else sampler
    steps = sampler.num_steps(length)
    budget = 1 + n * m * steps
    if method == "pretrained":
        return ["method.num_samples=1"]
    if method == "best_of_n":
        return [f"method.num_samples={m * steps}"]
    if method == "best_of_n_pool":  # n·N pretrained samples, one each; the top n are kept afterwards
        return ["method.num_samples=1"]
    if method == "svdd_pm":
        return [f"method.candidates={m}"]
    if method.startswith("svdd_rollout"):
        # n·M'·K reward calls for K selections (one call under the budget): M' = M·S/K keeps them at
        # n·M·S when a design selects at K < S steps.
        selections = compose_config("config", ["method=svdd_rollout", *VARIANTS.get(method, [])]
                                    ).method.selections
        k = steps if selections is None else min(steps, selections)
        return [f"method.candidates={max(1, m * steps // k)}", *VARIANTS.get(method, [])]
    if method == "svdd_mc":
        return [f"method.candidates={m}", f"method.rollouts={max(budget - n, 1)}"]
    if method == "smc":
        return [f"method.particles={m}"]
    if method == "refinement":
        rho = compose_config("config", ["method=refinement"]).method.remask_fraction
        k = max(1, round(rho * length))
        # A round re-denoises k positions: k first-hitting steps, at most S grid steps.
        per_round = n * (1 + m * (k if isinstance(sampler, FirstHittingSampler) else steps))
        # Rounded down: rounding to nearest gave 4 rounds, 17,024 calls, against 16,385 at n = 128,
        # L = 32, M = 4, over the budget the table compares at.
        rounds = max(1, (budget - n) // per_round)
        return [f"method.candidates={m}", f"method.rounds={rounds}"]
    return []


def designs_drawn(method: str, n: int, length: int, m: int, sampler: Sampler | None = None) -> int:
    """How many designs ``method`` is asked for: n, except the pooled Best-of-N, which draws Best-of-N's
    n·N samples as one pool (one sample each) and keeps its n best distinct afterwards, as SVDD-RO's
    ``keep=best_scored`` does with its completions."""
    if method != "best_of_n_pool":
        return n
    return n * m * (FirstHittingSampler() if sampler is None else sampler).num_steps(length)


def run_method(problem: Problem, setting: str, method: str, seed: int, args) -> dict:
    """One method on one setting and seed: the designs' metrics, calls and time."""
    reward, model, fit_s = problem.reward(setting, seed)
    task, pretrained = problem.task, problem.pretrained
    n, length, vocab = args.n, task.length, task.alphabet.size
    overrides = []
    if method == "exhaustive":
        t = time.perf_counter()
        designs, _ = exhaustive_search(reward, length, vocab, top_k=n, device=problem.device)
        run = {"reward_calls": vocab**length, "network_calls": 0, "seconds": time.perf_counter() - t,
               "info": {}}
    else:
        option = METHODS[method]
        overrides = [f"method={option}", *method_settings(method, n, length, candidates(args), sampler(args)),
                     *method_overrides(option, args.method_override)]
        fn = instantiate(compose_config("config", [*problem.overrides, *overrides]).method)
        gen = torch.Generator(device=problem.device).manual_seed(seed)
        draws = designs_drawn(method, n, length, candidates(args), sampler(args))
        res = fn(pretrained, ScaledReward(reward, problem.scale), draws, sampler=sampler(args),
                 generator=gen, batch_size=args.batch_size, progress=args.progress)
        designs = res.designs
        if method == "best_of_n_pool":
            designs = best_distinct(res.designs, res.rewards, n)[0]
        run = {"reward_calls": res.reward_calls, "network_calls": res.network_calls,
               "seconds": res.seconds, "info": res.info}
    torch.manual_seed(seed)  # the ELBO's times and masks
    oracle = setting.endswith("_oracle")
    metrics = evaluate_designs(designs.cpu(), task=task, reward_model=model,
                               reward=None if oracle else reward, offline=problem.offline,
                               diffusion=pretrained)
    return {"setting": setting, "method": method, "seed": seed, "n": n, "overrides": overrides,
            "reward_fit_seconds": fit_s, **metrics, **run}


def method_overrides(option: str, overrides: list[str]) -> list[str]:
    """The ``method.KEY=VALUE`` overrides whose key the method group's ``option`` has."""
    keys = compose_config("config", [f"method={option}"]).method.keys()
    return [o for o in overrides if o.split("=", 1)[0].removeprefix("method.") in keys]


def candidates(args) -> int:
    return args.candidates or int(compose_config("config", ["method=svdd_pm"]).method.candidates)


def sampler(args):
    return get_sampler(int(args.sampler) if args.sampler.isdigit() else args.sampler)


def run_scaling(args, command: str) -> None:
    """Cost vs n at L = 32 and vs L at n = ``args.scaling_n_fixed``, each method at its defaults."""
    points = [(32, n) for n in args.scaling_n] + [(length, args.scaling_n_fixed)
                                                  for length in args.scaling_lengths]
    for length in sorted({p[0] for p in points}):
        todo = [(n, m) for (ln, n) in points if ln == length for m in args.scaling_methods
                if not (args.out / "runs" / f"scaling__L{length}__n{n}__{m}.json").exists()]
        if not todo:
            continue
        problem = Problem([*EHRLICH_GENERAL, f"task.length={length}",
                           f"diffusion.pretrain.steps={args.scaling_pretrain_steps}", *args.override],
                          args.progress)
        model, _ = problem.reward_model(0)
        reward = ScaledReward(instantiate(problem.cfg.conservative, c=0.0)(model), problem.scale)
        for n, method in sorted(set(todo)):
            option = METHODS[method]
            fn = instantiate(compose_config("config", [*problem.overrides, f"method={option}",
                                                       *VARIANTS.get(method, []),
                                                       *method_overrides(option, args.method_override)]
                                            ).method)
            gen = torch.Generator(device=problem.device).manual_seed(0)
            res = fn(problem.pretrained, reward, n, sampler=sampler(args), generator=gen,
                     batch_size=args.batch_size, progress=args.progress)
            rec = {"length": length, "n": n, "method": method, "reward_calls": res.reward_calls,
                   "network_calls": res.network_calls, "seconds": res.seconds, "command": command}
            atomic_write_text(args.out / "runs" / f"scaling__L{length}__n{n}__{method}.json", json.dumps(rec))
            print(f"scaling L={length} n={n} {method}: {res.seconds:.1f} s, {res.reward_calls} reward / "
                  f"{res.network_calls} network calls", flush=True)


# ------------------------------------------------------------------------------------------ report
def _cell(values: list[float], key: str) -> str:
    """mean ± se over seeds; seeds where the value is −inf (no feasible design) are said, not averaged."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    worst = sum(v is not None and v == -math.inf for v in values)
    if not vals:
        return "−inf" if worst else "–"
    if key in ("reward_calls", "network_calls"):
        return f"{statistics.fmean(vals):,.0f}"
    fmt = {"unique": ".1f", "novelty": ".2f", "naturalness": ".2f", "seconds": ".1f"}.get(key, ".3f")
    return plus_minus(mean_se(vals), fmt) + (f" (−inf in {worst} of {len(values)} seeds)" if worst else "")


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x (1 = linear cost)."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / den if den else float("nan")


def report(out: Path, command: str, meta: dict) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    main_runs = [r for r in runs if "setting" in r]
    scaling = [r for r in runs if "length" in r]
    tables: dict[str, dict] = {}
    lines = ["# Inference-time alignment at equal reward calls", "", f"Command: `{command}`", "",
             "The runs it aggregates were produced by (each run's JSON in the runs folder keeps its "
             "command):", "", *sorted({f"- `{r['command']}`" for r in runs}), "", meta["setting"], ""]
    for setting in SETTINGS:
        rs = [r for r in main_runs if r["setting"] == setting]
        if not rs:
            continue
        table = {}
        lines += [f"## {setting}", "", "| method | seeds | " + " | ".join(h for _, h in COLUMNS) + " |",
                  "|---|---|" + "---:|" * len(COLUMNS)]
        for method in METHODS:
            mr = [r for r in rs if r["method"] == method]
            if not mr:
                continue
            row = {key: [r.get(key) for r in mr] for key, _ in COLUMNS}
            table[method] = {"seeds": sorted(r["seed"] for r in mr), "overrides": mr[0]["overrides"],
                             **{k: (mean_se([v for v in vs if v is not None and math.isfinite(v)])
                                    if any(v is not None and math.isfinite(v) for v in vs) else None)
                                for k, vs in row.items()}}
            lines.append(f"| {LABELS[method]} | {len(mr)} | "
                         + " | ".join(_cell(row[k], k) for k, _ in COLUMNS) + " |")
        settings_used = {m: t["overrides"] for m, t in table.items() if t["overrides"]}
        lines += ["", "Method settings beyond the config group's defaults: "
                  + "; ".join(f"{m}: `{' '.join(o[1:])}`" for m, o in settings_used.items() if o[1:])
                  + ".", ""]
        tables[setting] = table
    if scaling:
        lines += ["## Scaling (Ehrlich, CNN ensemble mean, config defaults, seed 0)", "",
                  "| method | L | n | wall s | reward calls | network calls |",
                  "|---|---:|---:|---:|---:|---:|"]
        order = list(METHODS)
        for r in sorted(scaling, key=lambda r: (order.index(r["method"]), r["length"], r["n"])):
            lines.append(f"| {LABELS[r['method']]} | {r['length']} | {r['n']} | {r['seconds']:.1f} | "
                         f"{r['reward_calls']:,} | {r['network_calls']:,} |")
        lines += ["", "Log-log slopes of wall time, reward calls and network calls (1 = linear):", ""]
        n_fixed = meta.get("scaling_n_fixed")
        for method in [m for m in order if any(r["method"] == m for r in scaling)]:
            parts = []
            for axis, key, fixed, at in (("n", "n", "length", 32), ("L", "length", "n", n_fixed)):
                rows = sorted((r for r in scaling if r["method"] == method and r[fixed] == at),
                              key=lambda r: r[key])
                if len(rows) > 1:
                    xs = [r[key] for r in rows]
                    parts.append(f"vs {axis} " + " / ".join(
                        f"{_slope(xs, [r[c] for r in rows]):.2f}"
                        for c in ("seconds", "reward_calls", "network_calls")))
            if parts:
                lines.append(f"- {LABELS[method]}: " + ", ".join(parts))
        lines.append("")
    lines += ["± is the standard error over seeds. true p100 / p50 / mean: the ground truth's max, median "
              "(infeasible count as worst) and mean over feasible designs; feasible: fraction not −inf; "
              "diversity: mean pairwise Hamming distance among the designs; "
              "novelty: mean Hamming distance to the nearest offline sequence; ELBO: naturalness under "
              "the pretrained model (nats per sequence); reward: mean of the reward the method steered "
              "by, in its own units; calls: sequences scored by the reward / passed through the "
              "denoiser. Wall time excludes fitting the reward model and pretraining.", "",
              f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
              f"{torch.get_num_threads()}.", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines), overwrite=True)
    atomic_write_text(out.with_suffix(".json"),
                      json.dumps({"meta": meta, "settings": tables, "scaling": scaling}, indent=1),
                      overwrite=True)
    print("\n".join(lines))
    return tables


# -------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n", type=int, default=128, help="designs per method")
    p.add_argument("--candidates", type=int, default=None,
                   help="SVDD-PM's M, which sets every method's budget (default: the method group's)")
    p.add_argument("--sampler", default="first_hitting", help="'first_hitting' or a number of grid steps")
    p.add_argument("--batch-size", type=int, default=4096, help="rows per network / reward call")
    p.add_argument("--override", action="append", default=[], help="app config override (every setting)")
    p.add_argument("--method-override", action="append", default=[],
                   help="method group override, e.g. method.alpha=0.3 (every method that has it)")
    p.add_argument("--scaling", action="store_true", help="also measure cost vs n and L (Ehrlich)")
    p.add_argument("--scaling-methods", nargs="+", default=SCALING_METHODS, choices=list(METHODS))
    p.add_argument("--scaling-n", nargs="+", type=int, default=[32, 64, 128])
    p.add_argument("--scaling-lengths", nargs="+", type=int, default=[32, 64, 128])
    p.add_argument("--scaling-n-fixed", type=int, default=32)
    p.add_argument("--scaling-pretrain-steps", type=int, default=300)
    p.add_argument("--out", type=Path, default=RESULTS / "guidance",
                   help="results prefix (OUT.md, OUT.json, OUT/runs/)")
    p.add_argument("--report", action="store_true", help="only aggregate existing runs")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "python experiments/bench_guidance.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    m = candidates(args)
    meta = {"setting": (f"{args.n} designs per method; budget: SVDD-PM's 1 + n·M·S reward calls with "
                        f"M = {m}, sampler `{args.sampler}` of S steps (S = L for first-hitting; with a grid "
                        "of S steps, SVDD's candidates spend at most n·M·S; the reward calls column says "
                        "what each method spent); every method at most at that budget except gradient "
                        "guidance (n·(S + 1)). Overrides: "
                        f"`{' '.join(args.override) or 'none'}`; method overrides: "
                        f"`{' '.join(args.method_override) or 'none'}`."),
            "scaling_n_fixed": args.scaling_n_fixed, "overrides": args.override,
            "method_overrides": args.method_override,
            "method_defaults": {opt: OmegaConf.to_container(
                compose_config("config", [f"method={opt}"]).method)
                for opt in sorted({o for o in METHODS.values() if o})}}
    if not args.report:
        problems: dict[str, Problem] = {}
        for setting in args.settings:
            key = "ehrlich" if setting.startswith("ehrlich") else "tfbind8"
            for seed in args.seeds:
                for method in args.methods:
                    if method == "exhaustive" and key != "tfbind8":
                        continue  # 32^32 Ehrlich sequences: no enumeration
                    if method == "gradient" and setting.endswith("_oracle"):
                        continue  # a black box has no gradient
                    path = args.out / "runs" / f"{setting}__{method}__seed{seed}.json"
                    if path.exists():
                        continue
                    if key not in problems:
                        problems[key] = Problem([*SETTINGS[setting], *args.override], args.progress)
                    rec = run_method(problems[key], setting, method, seed, args)
                    rec["command"] = command
                    atomic_write_text(path, json.dumps(rec))
                    print(f"{setting} {method} seed {seed}: p100 {rec['true_p100']:.3f} p50 "
                          f"{rec['true_p50']:.3f} feasible {rec.get('feasible', 1):.2f} unique "
                          f"{rec['unique']} | {rec['reward_calls']} reward / {rec['network_calls']} "
                          f"network calls, {rec['seconds']:.1f} s", flush=True)
        if args.scaling:
            run_scaling(args, command)
    report(args.out, command, meta)


if __name__ == "__main__":
    main()
