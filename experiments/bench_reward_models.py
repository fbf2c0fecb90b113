"""Benchmark: do reward models know where they are wrong? TFBind8, Design-Bench split.

Fit on the offline bottom 50% (minus held-out rows), then evaluate on (a) a random held-out part of
the bottom 50% (in-distribution) and (b) the top 50% of all 65,536 8-mers, which no model saw
(extrapolation). Prints a table and writes ``experiments/results/reward_models.{md,json}`` and
``reward_models_reliability.png``.

Run: ``.venv/bin/python experiments/bench_reward_models.py [--overwrite]`` (~5-10 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from mbo.atomic import atomic_write_text
from mbo.data.dataset import SequenceDataset
from mbo.tasks.tfbind8 import TFBind8
from reward_models import (
    BootstrapEnsemble,
    CategoricalGP,
    DeepEnsemble,
    ExtrapolationCalibrated,
    FeatureBonus,
    OneHotGP,
    VariationalGP,
)
from reward_models.diagnostics import evaluate, reliability_plot

RESULTS = Path(__file__).parent / "results"
EXACT_GP_POINTS = 2000
HELD_OUT, CALIBRATION = 3000, 1000


def all_8mers(task: TFBind8) -> SequenceDataset:
    """Every 8-mer with its true (normalized) score from the oracle."""
    v = task.alphabet.size
    tokens = torch.tensor(list(itertools.product(range(v), repeat=task.length)), dtype=torch.long)
    return SequenceDataset(tokens, task.alphabet, task.oracle(tokens).float())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overwrite", action="store_true", help="replace existing results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # shared 2-core machine

    task = TFBind8()
    offline = task.offline_dataset()
    threshold = float(offline.labels.max())
    full = all_8mers(task)
    top = full.subset(full.labels > threshold)
    perm = torch.randperm(len(offline), generator=torch.Generator().manual_seed(args.seed))
    held_out = offline.subset(perm[:HELD_OUT])
    calib = offline.subset(perm[HELD_OUT:HELD_OUT + CALIBRATION])
    train = offline.subset(perm[HELD_OUT + CALIBRATION:])
    print(f"train {len(train)}, held-out bottom {len(held_out)}, calibration {len(calib)}, "
          f"unseen top {len(top)} (score > {threshold:.3f})")

    ens = dict(num_members=5, hidden_dims=(64, 64), epochs=20, batch_size=256)
    models = {
        "DeepEnsemble (K=5 MLP)": (lambda: DeepEnsemble(**ens), len(train)),
        "BootstrapEnsemble (K=5 MLP)": (lambda: BootstrapEnsemble(**ens), len(train)),
        "FeatureBonus (on DeepEnsemble)": (None, len(train)),
        "ExtrapolationCalibrated (DeepEnsemble)":
            (lambda: ExtrapolationCalibrated(DeepEnsemble(**ens)), len(train)),
        f"OneHotGP (exact, {EXACT_GP_POINTS} pts)":
            (lambda: OneHotGP(max_train=EXACT_GP_POINTS, maxiter=100), EXACT_GP_POINTS),
        f"CategoricalGP (exact, {EXACT_GP_POINTS} pts)":
            (lambda: CategoricalGP(max_train=EXACT_GP_POINTS, maxiter=100), EXACT_GP_POINTS),
        "VariationalGP (M=256)":
            (lambda: VariationalGP(num_inducing=256, batch_size=512, epochs=10), len(train)),
    }
    rows, curves = [], {}
    deep, deep_fit_s = None, 0.0
    for name, (make, n_train) in models.items():
        t0 = time.perf_counter()
        if make is None:  # the bonus reuses the fitted deep ensemble; its scale fit on calib rows
            model = FeatureBonus(deep, lam=1.0).fit(train).calibrate(calib)
            fit_s = time.perf_counter() - t0 + deep_fit_s
        else:
            model = make().fit(train, seed=args.seed, progress=True)
            fit_s = time.perf_counter() - t0
        if isinstance(model, DeepEnsemble) and not isinstance(model, BootstrapEnsemble):
            deep, deep_fit_s = model, fit_s
        for region, data in (("in-dist", held_out), ("top-50%", top)):
            # NLL / coverage against labels use the predictive std (label noise included);
            # the epistemic std (what conservative rewards use) is reported next to it.
            pred, (mean, std, y) = evaluate(model, data, observation_noise=True)
            epi, _ = evaluate(model, data, observation_noise=False)
            rows.append({"model": name, "region": region, "fit_s": round(fit_s, 1),
                         "n_train": n_train, **{k: pred[k] for k in (
                             "n", "rmse", "spearman", "nll", "coverage_1sigma", "coverage_2sigma")},
                         "std_error_spearman": epi["std_error_spearman"],
                         "std_error_spearman_predictive": pred["std_error_spearman"],
                         "mean_epistemic_std": epi["mean_std"],
                         "mean_predictive_std": pred["mean_std"]})
            curves[f"{name.split(' ')[0]} {region}"] = (mean, std, y)
            r = rows[-1]
            print(f"{name:34s} {region:8s} fit {fit_s:6.1f}s rmse {r['rmse']:.3f} "
                  f"rho {r['spearman']:.3f} nll {r['nll']:7.2f} cov1 {r['coverage_1sigma']:.2f} "
                  f"cov2 {r['coverage_2sigma']:.2f} rho(std,|err|) {r['std_error_spearman']:.3f} "
                  f"std {r['mean_epistemic_std']:.4f}", flush=True)

    header = ("| model | region | fit s | n train | RMSE | Spearman | NLL | cov 1σ | cov 2σ "
              "| ρ(std,\\|err\\|) | mean epistemic std | mean predictive std |")
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['model']} | {r['region']} | {r['fit_s']} | {r['n_train']} | "
                     f"{r['rmse']:.4f} | {r['spearman']:.3f} | {r['nll']:.2f} | "
                     f"{r['coverage_1sigma']:.3f} | {r['coverage_2sigma']:.3f} | "
                     f"{r['std_error_spearman']:.3f} | {r['mean_epistemic_std']:.4f} | "
                     f"{r['mean_predictive_std']:.4f} |")
    ratio_lines = ["", "Mean epistemic std, unseen top 50% / in-distribution held-out:", ""]
    for name in models:
        a, b = (next(r for r in rows if r["model"] == name and r["region"] == reg)
                for reg in ("in-dist", "top-50%"))
        ratio_lines.append(f"- {name}: {b['mean_epistemic_std'] / a['mean_epistemic_std']:.2f}x")
    md = "\n".join([
        "# Reward models on TFBind8: accuracy and uncertainty in and out of distribution", "",
        f"Train: {len(train)} rows of the offline bottom 50% (exact GPs: a random "
        f"{EXACT_GP_POINTS} of them). In-dist: {len(held_out)} held-out bottom-50% rows. "
        f"Top-50%: all {len(top)} 8-mers with true score > {threshold:.3f}, never seen. "
        f"FeatureBonus scale fitted on {len(calib)} further held-out bottom rows; its fit time "
        "includes the deep ensemble it wraps. NLL and coverage use the predictive std (label noise "
        "added); ρ(std,|err|) uses the epistemic std. Seed "
        f"{args.seed}, 1 CPU thread; generated by `experiments/bench_reward_models.py`.", "",
        *lines, *ratio_lines, ""])
    print(md)
    atomic_write_text(RESULTS / "reward_models.md", md, overwrite=args.overwrite)
    atomic_write_text(RESULTS / "reward_models.json", json.dumps(rows, indent=1),
                      overwrite=args.overwrite)
    reliability_plot(curves, RESULTS / "reward_models_reliability.png",
                     title="TFBind8: in-distribution vs unseen top 50%", overwrite=args.overwrite)


if __name__ == "__main__":
    main()
