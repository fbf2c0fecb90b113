"""Benchmark: how far a reward model lets any design method go on TFBind8 landscapes.

Every method that optimizes a reward model (fine-tuning, guidance, search) can at best return the
model's own top ``n`` of all 65,536 8-mers. This fits each reward model on a landscape's offline split
(the Design-Bench bottom half), scores every 8-mer with the ensemble mean, and reports, per
(landscape, model, seed):

- the true p50 and p100 of the model's top ``n`` (the ceiling for ``n`` unique designs);
- how many of those ``n`` score ≥ 0.9;
- the model's best rank among the landscape's sequences that truly score ≥ 0.99 (rank 1 = the model's
  favourite; a p100 ≥ 0.99 needs one of them inside the top ``n``).

Run: ``.venv/bin/python experiments/bench_model_ceiling.py`` (~15 min on one core; ``--landscapes``
and ``--models`` split it over processes that share ``--out``); ``--report`` only aggregates
``OUT/runs/*.json`` into ``OUT.md`` and ``OUT.json``.
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

from experiments.bench_reward_models import all_8mers
from experiments.report import mean_se, plus_minus
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.data.alphabet import one_hot

RESULTS = Path(__file__).parent / "results"
LANDSCAPES = ["SIX6_REF_R1", "PAX6_REF_R1", "KLF1_REF_R1"]
MODELS = {
    "ensemble": ["reward_model=ensemble"],
    "ensemble_2x256": ["reward_model=ensemble", "reward_model.hidden_dims=[256,256]",
                       "reward_model.epochs=30"],
    "conv_ensemble": ["reward_model=conv_ensemble"],
    "conv_ensemble_10ep": ["reward_model=conv_ensemble", "reward_model.epochs=10"],
    "conv_ensemble_5ep": ["reward_model=conv_ensemble", "reward_model.epochs=5"],
    "conv_ensemble_10ep_lr3e-3": ["reward_model=conv_ensemble", "reward_model.epochs=10",
                                  "reward_model.lr=3e-3"],
    "conv_ensemble_32ch": ["reward_model=conv_ensemble", "reward_model.conv_channels=[32,32]"],
    "conv_ensemble_k3": ["reward_model=conv_ensemble", "reward_model.num_members=3"],
}
LABELS = {"ensemble": "MLP ensemble, 2 × 64, 20 epochs (the general default)",
          "ensemble_2x256": "MLP ensemble, 2 × 256, 30 epochs",
          "conv_ensemble": "CNN ensemble (`reward_model=conv_ensemble`, 30 epochs)",
          "conv_ensemble_10ep": "CNN ensemble, 10 epochs",
          "conv_ensemble_5ep": "CNN ensemble, 5 epochs",
          "conv_ensemble_10ep_lr3e-3": "CNN ensemble, 10 epochs, lr 3e-3",
          "conv_ensemble_32ch": "CNN ensemble, 2 × 32 channels, 30 epochs",
          "conv_ensemble_k3": "CNN ensemble, 3 members, 30 epochs"}
TOP_TRUE = 0.99
GOOD = 0.9


def run(landscape: str, model_name: str, seed: int, n: int, command: str) -> dict:
    """Fit one reward model and rank every 8-mer by its mean."""
    cfg = compose_config("config", [f"task.landscape={landscape}", *MODELS[model_name]])
    task = instantiate(cfg.task)
    offline = task.offline_dataset()
    t = time.perf_counter()
    model = instantiate(cfg.reward_model).fit(offline, seed=seed)
    fit_s = time.perf_counter() - t
    model.eval()
    v = task.alphabet.size
    every = all_8mers(task)
    tokens, true = every.tokens, every.labels
    with torch.no_grad():
        pred = torch.cat([model.mean_std(one_hot(tokens[i:i + 8192], v))[0].reshape(-1)
                          for i in range(0, len(tokens), 8192)])
    order = pred.argsort(descending=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, len(order) + 1)
    top = true[order[:n]]
    best_true = true >= TOP_TRUE
    return {"landscape": task.name.removeprefix("tfbind8-"), "model": model_name, "seed": seed, "n": n,
            "true_p50": float(top.median()), "true_p100": float(top.max()),
            "n_good": int((top >= GOOD).sum()),
            "best_rank_of_top": int(rank[best_true].min()), "n_top": int(best_true.sum()),
            "pred_top_n": float(pred[order[n - 1]]), "pred_of_best_true": float(pred[true.argmax()]),
            "best_offline": float(offline.labels.max()), "fit_s": fit_s,
            "overrides": MODELS[model_name], "command": command}


def report(out: Path, command: str) -> None:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    n = runs[0]["n"] if runs else 128
    lines = ["# The reward model's ceiling on TFBind8 landscapes", "", f"Command: `{command}`", "",
             "The runs it aggregates were produced by (each run's JSON in the runs folder keeps its "
             "command):", "", *sorted({f"- `{r['command']}`" for r in runs}), "",
             f"Each reward model fitted on the landscape's offline split (the bottom half), all 65,536 "
             f"8-mers ranked by its mean. Columns: true p50 and "
             f"p100 of the model's top {n} (what any method optimizing that model can at best return as "
             f"{n} unique designs); 'top {n} ≥ {GOOD}': how many of them truly score ≥ {GOOD}; 'best "
             f"rank of a ≥ {TOP_TRUE}': the model's best rank among the landscape's sequences truly "
             f"scoring ≥ {TOP_TRUE} (how many there are in brackets); p100 ≥ {TOP_TRUE} needs it ≤ {n}. "
             "Mean ± standard error over seeds; ranks as min–max over seeds; 'fit s': seconds to fit on "
             "one thread, with another job beside it.", ""]
    for landscape in dict.fromkeys(r["landscape"] for r in runs):
        rs = [r for r in runs if r["landscape"] == landscape]
        lines += [f"## {landscape} (best offline label {rs[0]['best_offline']:.3f})", "",
                  f"| reward model | seeds | true p50 | true p100 | top {n} ≥ {GOOD} | best rank of a ≥ "
                  f"{TOP_TRUE} | fit s |", "|---|---:|---:|---:|---:|---:|---:|"]
        for model_name in MODELS:
            mr = [r for r in rs if r["model"] == model_name]
            if not mr:
                continue
            ranks = [r["best_rank_of_top"] for r in mr]
            lines.append(
                f"| {LABELS[model_name]} | {len(mr)} | {plus_minus(mean_se([r['true_p50'] for r in mr]))} "
                f"| {plus_minus(mean_se([r['true_p100'] for r in mr]))} "
                f"| {plus_minus(mean_se([r['n_good'] for r in mr]), '.1f')} "
                f"| {min(ranks):,}–{max(ranks):,} ({mr[0]['n_top']}) "
                f"| {plus_minus(mean_se([r['fit_s'] for r in mr]), '.0f')} |")
        lines.append("")
    lines += [f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
              f"{torch.get_num_threads()}.", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines), overwrite=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(runs, indent=1), overwrite=True)
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--landscapes", nargs="+", default=LANDSCAPES)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--n", type=int, default=128, help="designs: the size of the model's top set")
    p.add_argument("--out", type=Path, default=RESULTS / "model_ceiling",
                   help="writes OUT.md, OUT.json and OUT/runs/*.json")
    p.add_argument("--report", action="store_true", help="only aggregate existing runs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # shared 2-core machine
    command = shlex.join(["python", "experiments/bench_model_ceiling.py", *(sys.argv[1:] if argv is None
                                                                             else argv)])
    if not args.report:
        (args.out / "runs").mkdir(parents=True, exist_ok=True)
        for landscape in args.landscapes:
            for model_name in args.models:
                for seed in args.seeds:
                    r = run(landscape, model_name, seed, args.n, command)
                    print(f"{landscape} {model_name} seed {seed}: p50 {r['true_p50']:.3f} p100 "
                          f"{r['true_p100']:.3f} best rank of a ≥ {TOP_TRUE}: {r['best_rank_of_top']:,} "
                          f"({r['fit_s']:.0f} s)", flush=True)
                    atomic_write_text(args.out / "runs" / f"{r['landscape']}__{model_name}__seed{seed}.json",
                                      json.dumps(r, indent=1), overwrite=True)
    report(args.out, command)


if __name__ == "__main__":
    main()
