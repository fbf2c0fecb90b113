"""Benchmark: fine-tuners side by side — how close to the target, how good the designs, at what cost.

Every fine-tuner of :mod:`mbo.finetune` (settings from the ``finetune`` config group, ``--override`` on
top) tunes the app's pretrained model towards p* ∝ p_pre·exp(r/α) for the same reward, α and seed;
then ``n`` distinct new designs are drawn from it exactly as ``mbo-run`` draws them (the best ``n``
by the reward among ``oversample × n`` distinct new candidates) and scored by the ground truth.
Rows: the pretrained model, each fine-tuner, and SVDD-PM (an inference-time method;
:mod:`mbo.guidance`) for the cost comparison.
Settings (``--settings``), as in ``bench_guidance.py``: ``tfbind8_conservative`` (the app's default
reward), ``ehrlich_mean`` (offline Ehrlich, CNN ensemble mean), ``ehrlich_oracle`` (the Ehrlich
function itself, a black box: reward backprop cannot run there).

Columns: the inference-time table's (true p100 / p50 / mean, unique, feasible, novelty, naturalness,
reward) plus the fine-tuning KL to p_pre and the target gap log Z − J/α (nats; 0 = at the target,
:func:`mbo.finetune.target_gap`), and the cost to produce 128 and 10,000 designs: fine-tuning pays its
training once and then one sampler run per design; an inference-time method pays per design. Costs
are wall seconds and reward calls (sequences scored): the training's and the per-design sampling cost
are measured here (the latter over every candidate drawn), and the 128- and 10,000-design columns are
training + that many times the per-design cost, plus one reward call per design to rank it (the run
ranks all ``oversample × n`` candidates; SVDD-PM's per-design calls already include its final score).
Each fine-tuner runs at its own config group's budget, not at a common one.

Each (setting, method, seed) result goes to ``OUT/runs/`` as it finishes (resumable); ``--report``
aggregates them into ``OUT.md`` / ``OUT.json``.

Run: ``.venv/bin/python experiments/bench_finetune.py --settings tfbind8_conservative
--seeds 0 1 2 3 4 5 6 7 --out experiments/results/finetune``.
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
from torch import Tensor

from conservative import ScaledReward
from experiments.bench_guidance import OracleReward, Problem
from experiments.report import mean_se, plus_minus
from experiments.run import conservative_reward
from experiments.settings import EHRLICH_GENERAL, TFBIND8_GENERAL
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.data.alphabet import one_hot
from mbo.designs import ranked, unique_designs
from mbo.evaluate import evaluate_designs
from mbo.finetune import target_gap

RESULTS = Path(__file__).parent / "results"
SETTINGS = {"tfbind8_conservative": TFBIND8_GENERAL, "ehrlich_mean": EHRLICH_GENERAL,
            "ehrlich_oracle": EHRLICH_GENERAL}
FINETUNERS = ["backprop", "ppo", "rwr", "vidd"]
METHODS = ["pretrained", *FINETUNERS, "svdd_pm"]
LABELS = {"pretrained": "pretrained samples", "backprop": "reward backprop", "ppo": "PPO",
          "rwr": "reward-weighted MLE", "vidd": "VIDD", "svdd_pm": "SVDD-PM (inference time)"}
COLUMNS = [("true_p100", "true p100"), ("true_p50", "true p50"), ("true_mean", "true mean"),
           ("unique", "unique"), ("feasible", "feasible"), ("novelty", "novelty"),
           ("naturalness", "ELBO"), ("reward_mean", "reward"), ("kl", "KL"), ("gap", "target gap"),
           ("cost_128_s", "s / 128"), ("cost_10k_s", "s / 10k"), ("calls_128", "reward calls / 128"),
           ("calls_10k", "reward calls / 10k")]


class Counted:
    """A reward that counts the sequences it scores."""

    def __init__(self, reward):
        self.reward, self.calls = reward, 0

    def __call__(self, x: Tensor) -> Tensor:
        self.calls += x.shape[0]
        return self.reward(x)

    def __getattr__(self, name):  # components() etc. of the wrapped reward
        return getattr(self.reward, name)


def run_method(problem: Problem, setting: str, method: str, seed: int, args) -> dict:
    task, pretrained, n = problem.task, problem.pretrained, args.n
    if setting.endswith("_oracle"):
        raw, model = OracleReward(task), None
    else:
        model, _ = problem.reward_model(seed)
        raw = (conservative_reward(problem.cfg, model, pretrained, problem.offline, problem.device)[0]
               if setting.endswith("_conservative") else instantiate(problem.cfg.conservative, c=0.0)(model))
    reward = Counted(ScaledReward(raw, problem.scale))
    cfg = compose_config("config", [*problem.overrides, *([f"finetune={method}"] if method in FINETUNERS
                                                         else []), *args.override])
    alpha = float(cfg.finetune.alpha)
    gen = torch.Generator(device=problem.device).manual_seed(seed)
    out: dict = {"setting": setting, "method": method, "seed": seed, "alpha": alpha}
    t = time.perf_counter()
    if method in FINETUNERS:
        tuned, history = instantiate(cfg.finetune)(pretrained, reward, alpha=alpha, seed=seed,
                                                   progress=args.progress)
        train_s, train_calls = time.perf_counter() - t, reward.calls
        draw = lambda k: tuned.sample(k, generator=gen, ref=pretrained)  # noqa: E731
        out["history_tail"] = history[-1]
    elif method == "svdd_pm":
        align = instantiate(compose_config("config", ["method=svdd_pm", *args.method_override]).method)
        train_s, train_calls, tuned = 0.0, 0, None
        draw = lambda k: align(pretrained, reward, k, generator=gen).designs  # noqa: E731
    else:
        train_s, train_calls, tuned = 0.0, 0, None
        draw = lambda k: pretrained.sample(k, generator=gen)  # noqa: E731
    t, before = time.perf_counter(), reward.calls
    designs, drawn = unique_designs(draw, n * int(cfg.oversample), exclude=problem.offline.tokens)
    sample_s, sample_calls = time.perf_counter() - t, reward.calls - before
    with torch.no_grad():
        designs, _ = ranked(designs, raw(one_hot(designs, task.alphabet.size).to(problem.device)).cpu())
    out["candidates"], designs = len(designs), designs[:n]
    per_design_s, per_design_calls = sample_s / max(drawn, 1), sample_calls / max(drawn, 1)
    out.update(train_s=train_s, train_calls=train_calls, drawn=drawn,
               cost_128_s=train_s + 128 * per_design_s, cost_10k_s=train_s + 10_000 * per_design_s,
               calls_128=train_calls + 128 * per_design_calls + 128,
               calls_10k=train_calls + 10_000 * per_design_calls + 10_000)
    if tuned is not None and alpha > 0:
        g = torch.Generator(device=problem.device).manual_seed(10_000 + seed)
        out.update(target_gap(tuned, pretrained, reward.reward, alpha, n=args.gap_samples, generator=g))
    torch.manual_seed(seed)  # the ELBO's times and masks
    out.update(evaluate_designs(designs.cpu(), task=task, reward_model=model,
                                reward=None if setting.endswith("_oracle") else raw, offline=problem.offline,
                                diffusion=pretrained))
    return out


def report(out: Path, command: str) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    lines = ["# Fine-tuning towards p_pre·exp(r/α): quality, distance to the target, cost", "",
             f"Command: `{command}`", "", "Runs aggregated (each JSON keeps its command):", "",
             *sorted({f"- `{r['command']}`" for r in runs}), ""]
    tables = {}
    for setting in SETTINGS:
        rs = [r for r in runs if r["setting"] == setting]
        if not rs:
            continue
        lines += [f"## {setting}", "", "| method | seeds | " + " | ".join(h for _, h in COLUMNS) + " |",
                  "|---|---|" + "---:|" * len(COLUMNS)]
        tables[setting] = {}
        for method in METHODS:
            mr = [r for r in rs if r["method"] == method]
            if not mr:
                continue
            cells, row = [], {}
            for key, _ in COLUMNS:
                vals = [r[key] for r in mr if key in r and r[key] is not None and math.isfinite(r[key])]
                row[key] = mean_se(vals) if vals else None
                fmt = {"unique": ".1f", "novelty": ".2f", "naturalness": ".2f"}.get(key, ".3f")
                if key.startswith(("cost", "calls")):
                    cells.append(f"{statistics.fmean(vals):,.0f}" if vals else "–")
                else:
                    cells.append(plus_minus(row[key], fmt) if vals else "–")
            tables[setting][method] = row
            lines.append(f"| {LABELS[method]} | {len(mr)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["± is the standard error over seeds. KL: the fine-tuned model's trajectory KL to the prior "
              "(nats); target gap: log Z − J/α = KL to the target p* (nats, estimated from "
              "samples: a small negative value is estimation error). Costs: wall seconds and reward "
              "calls to produce that many designs, training included (fine-tuners pay it once). "
              f"torch {torch.__version__}, {platform.machine()} CPU, 1 thread.", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines), overwrite=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"command": command, "tables": tables,
                                                            "runs": runs}, indent=1), overwrite=True)
    print("\n".join(lines))
    return tables


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--gap-samples", type=int, default=512)
    p.add_argument("--override", action="append", default=[], help="app config override (every row)")
    p.add_argument("--method-override", action="append", default=[], help="SVDD-PM row override")
    p.add_argument("--out", type=Path, default=RESULTS / "finetune")
    p.add_argument("--report", action="store_true")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "python experiments/bench_finetune.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    if not args.report:
        problems: dict[str, Problem] = {}
        for setting in args.settings:
            for seed in args.seeds:
                for method in args.methods:
                    if method == "backprop" and setting.endswith("_oracle"):
                        continue  # a black box has no gradient
                    path = args.out / "runs" / f"{setting}__{method}__seed{seed}.json"
                    if path.exists():
                        continue
                    key = "ehrlich" if setting.startswith("ehrlich") else "tfbind8"
                    if key not in problems:
                        problems[key] = Problem([*SETTINGS[setting], *args.override], args.progress)
                    rec = run_method(problems[key], setting, method, seed, args)
                    rec["command"] = command
                    atomic_write_text(path, json.dumps(rec))
                    print(f"{setting} {method} seed {seed}: p100 {rec['true_p100']:.3f} p50 "
                          f"{rec['true_p50']:.3f} unique {rec['unique']} gap "
                          f"{rec.get('gap', float('nan')):.3f} train {rec['train_s']:.0f} s", flush=True)
    report(args.out, command)


if __name__ == "__main__":
    main()
