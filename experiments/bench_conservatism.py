"""Benchmark: does pessimism pay where it should — small data, a narrow region — and do c = auto and
α = auto find the right setting?

TFBind8 regimes (``task.offline_size`` / ``task.offline_region``; the labeled rows are drawn per seed,
the prior is pretrained once on the whole offline split, as unlabeled sequences are cheap):

- ``full``: the Design-Bench offline split (32,898 labels, the bottom half);
- ``n1000``, ``n200``: 1,000 / 200 labels drawn at random from it;
- ``cluster1000``: the 1,000 labeled rows nearest to one random row (one region of sequence space).

Per regime and seed, one reward model (``mbo-run``'s ``reward_model``) is fitted, then ``mbo-run``'s
design method (the default fine-tuner) runs on the pessimistic reward mean − c·std with KL weight α for
every fixed (c, α) of ``--c × --alpha`` (default: ``auto.c_grid × auto.alpha_grid``), each giving 128
distinct new designs the way ``mbo-run`` picks them. ``conservative.c=auto finetune.alpha=auto``
(:func:`conservative.choose_c_alpha`, offline data only) picks one pair per seed; its row is the designs
of the pair it chose (run as well if it is off the fixed grid). Naive = c = 0 at the fine-tuner's default
α. The oracle-best fixed setting is the pair with the best mean true p50 over seeds (what a sweep scored
by the oracle would choose; no lab can). Columns: true p50 / p100, predicted mean of the designs,
over-optimization gap (predicted − true mean). ``OUT.png``: true vs predicted score of naive and auto
designs (seed 0).

Each (regime, seed) result goes to ``OUT/runs/`` as it finishes (skipped if present).

Run: ``.venv/bin/python experiments/bench_conservatism.py --seeds 0 1 --c 0 3 10 --alpha 0.01 0.03 0.1
--out experiments/results/conservatism``.
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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from hydra.utils import instantiate

from conservative import ScaledReward, label_scale
from conservative.auto import trial_name
from experiments.report import mean_se, plus_minus
from experiments.run import conservative_reward, designer
from experiments.settings import TFBIND8_GENERAL
from mbo.atomic import atomic_path, atomic_write_text
from mbo.config import compose_config
from mbo.data.alphabet import one_hot
from mbo.designs import ranked, unique_designs
from mbo.diffusion.cache import pretrained_diffusion

RESULTS = Path(__file__).parent / "results"
REGIMES = {"full": [], "n1000": ["task.offline_size=1000"], "n200": ["task.offline_size=200"],
           "cluster1000": ["task.offline_size=1000", "task.offline_region=cluster"]}


def run_one(regime: str, seed: int, args) -> dict:
    cfg = compose_config("config", [*TFBIND8_GENERAL, *REGIMES[regime], f"task.offline_seed={seed}",
                                    f"seed={seed}", "progress=false", *args.override])
    naive_alpha = float(cfg.finetune.alpha)
    cfg.conservative.c, cfg.finetune.alpha = "auto", "auto"
    task = instantiate(cfg.task)
    offline = task.offline_dataset()
    pretrained = pretrained_diffusion(task.pretrain_corpus(), task.alphabet.size, cfg.diffusion,
                                      cfg.cache_dir, name=task.name)
    pretrained.requires_grad_(False)
    device = pretrained.device
    t = time.perf_counter()
    model = instantiate(cfg.reward_model).fit(offline, seed=seed)
    _, chosen = conservative_reward(cfg, model, pretrained, offline, device)
    auto = (chosen["c"], chosen["alpha"])
    out = {"regime": regime, "seed": seed, "n_offline": len(offline),
           "best_offline": float(offline.labels.max()), "auto": trial_name(*auto),
           "naive": trial_name(0.0, naive_alpha), "auto_trials": chosen["trials"],
           "fit_and_auto_s": time.perf_counter() - t, "settings": {}}
    n = int(cfg.n_designs)
    cs = args.c if args.c is not None else cfg.auto.c_grid
    alphas = args.alpha if args.alpha is not None else cfg.auto.alpha_grid
    cells = {(float(c), float(a)) for c in cs for a in alphas} | {auto, (0.0, naive_alpha)}
    for c, alpha in sorted(cells):
        t = time.perf_counter()
        reward = instantiate(cfg.conservative, c=c)(model)
        gen = torch.Generator(device=device).manual_seed(seed)
        scaled = ScaledReward(reward, label_scale(offline.labels))
        cfg.finetune.alpha = alpha
        draw, *_ = designer(cfg, pretrained, scaled, gen, device, False)
        found, _ = unique_designs(draw, n * int(cfg.oversample), exclude=offline.tokens)
        with torch.no_grad():
            x = one_hot(found, task.alphabet.size).float()
            found, _ = ranked(found, reward(x).cpu())
            designs = found[:n]
            mean, _ = model.mean_std(one_hot(designs, task.alphabet.size).float())
        true = task.oracle(designs).double()
        name = trial_name(c, alpha)
        out["settings"][name] = {
            "c": c, "alpha": alpha, "true_p50": float(true.median()), "true_p100": float(true.max()),
            "pred_mean": float(mean.mean()), "overopt_gap": float(mean.double().mean() - true.mean()),
            "pred": mean.tolist(), "true": true.tolist(), "time_s": time.perf_counter() - t}
        print(f"{regime} seed {seed} {name}: p50 {out['settings'][name]['true_p50']:.3f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    return out


def report(args, command: str) -> None:
    runs = [json.loads(p.read_text()) for p in sorted((args.out / "runs").glob("*.json"))]
    lines = ["# Conservatism by regime: naive vs BRAID (c, α = auto) vs every fixed (c, α), TFBind8", "",
             f"Command: `{command}`", "",
             f"torch {torch.__version__}, {platform.machine()} CPU, 1 thread. 128 designs per row and "
             "seed, true scores from the landscape; mean ± se over seeds. `auto` = the (c, α) that "
             "`conservative.c=auto finetune.alpha=auto` chose from the offline data alone (its picks per "
             "seed in brackets); naive = c = 0 at the fine-tuner's default α; `oracle-best` = the fixed "
             "setting with the best mean true p50 (needs the oracle).", ""]
    summary = {}
    fig_rows = [r for r in REGIMES if any(x["regime"] == r for x in runs)]
    cols = max(1, len(fig_rows))
    fig, axes = plt.subplots(1, cols, figsize=(4 * cols, 3.8), squeeze=False)
    for k, regime in enumerate(fig_rows):
        rs = sorted((r for r in runs if r["regime"] == regime), key=lambda r: r["seed"])
        # Only the settings every seed ran are compared (an auto pick off the grid is its seed's alone).
        common = [k for k in rs[0]["settings"] if all(k in r["settings"] for r in rs)]
        rows = {k: [r["settings"][k] for r in rs] for k in common}
        rows["auto"] = [r["settings"][r["auto"]] for r in rs]
        # Naive: c = 0 at the fine-tuner's default α now (every run has it: the default is on the grid).
        naive = trial_name(0.0, float(compose_config("config", [*TFBIND8_GENERAL, *args.override])
                                         .finetune.alpha))
        p50 = {name: mean_se([v["true_p50"] for v in vals]) for name, vals in rows.items()}
        best_fixed = max((name for name in rows if name != "auto"), key=lambda name: p50[name][0])
        lines += [f"## {regime} ({rs[0]['n_offline']} labels; best offline label "
                  f"{statistics.fmean(r['best_offline'] for r in rs):.3f})", "",
                  "| setting | true p50 | true p100 | predicted mean | over-optimization gap |",
                  "|---|---:|---:|---:|---:|"]
        for name, vals in rows.items():
            label = name + (f" [{'; '.join(r['auto'] for r in rs)}]" if name == "auto" else "")
            label += " (naive)" if name == naive else ""
            label += " (oracle-best)" if name == best_fixed else ""
            lines.append(f"| {label} | {plus_minus(p50[name])} | "
                         f"{plus_minus(mean_se([v['true_p100'] for v in vals]))} | "
                         f"{plus_minus(mean_se([v['pred_mean'] for v in vals]))} | "
                         f"{plus_minus(mean_se([v['overopt_gap'] for v in vals]))} |")
        auto, nai, best = p50["auto"], p50[naive], p50[best_fixed]
        se = best[1] if not math.isnan(best[1]) else 0.0
        summary[regime] = {"auto_p50": auto, "naive_p50": nai, "oracle_best": best_fixed,
                           "oracle_best_p50": best, "auto_ge_naive": auto[0] >= nai[0],
                           "auto_above_naive": auto[0] > nai[0] + (nai[1] if not math.isnan(nai[1]) else 0),
                           "auto_within_se_of_best": auto[0] >= best[0] - se,
                           "auto_picks": [r["auto"] for r in rs],
                           "naive_gap": mean_se([v["overopt_gap"] for v in rows[naive]])[0],
                           "auto_gap": mean_se([v["overopt_gap"] for v in rows["auto"]])[0]}
        s = summary[regime]
        yes = {True: "yes", False: "no"}
        lines += ["", f"auto ≥ naive: {yes[s['auto_ge_naive']]}; auto above naive by more than naive's se: "
                  f"{yes[s['auto_above_naive']]}; auto within one se of the oracle-best fixed setting: "
                  f"{yes[s['auto_within_se_of_best']]}; over-optimization gap naive {s['naive_gap']:+.3f}, "
                  f"auto {s['auto_gap']:+.3f}.", ""]
        ax = axes[0, k]
        first = rs[0]
        picked = first["settings"][first["auto"]]
        for name, v in ((f"naive ({naive})", first["settings"][naive]), (f"auto ({first['auto']})", picked)):
            ax.scatter(v["true"], v["pred"], s=8, alpha=0.6, label=name)
        lo = min(min(first["settings"][naive]["true"]), min(first["settings"][naive]["pred"]))
        ax.plot([lo, 1], [lo, 1], "k--", lw=1)
        ax.set(title=f"{regime} (seed {first['seed']})", xlabel="true score", ylabel="predicted mean")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(args.out.with_suffix(".png"), overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    lines += [f"![true vs predicted]({args.out.name}.png)", ""]
    text = "\n".join(lines)
    atomic_write_text(args.out.with_suffix(".md"), text, overwrite=True)
    slim = [{**r, "settings": {c: {k: v for k, v in d.items() if k not in ("pred", "true")}
                               for c, d in r["settings"].items()}} for r in runs]
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"command": command, "summary": summary,
                                                                 "runs": slim}, indent=1), overwrite=True)
    print(text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--c", nargs="+", type=float, help="fixed c values to run (default: auto.c_grid)")
    p.add_argument("--alpha", nargs="+", type=float, help="fixed α values to run (default: auto.alpha_grid)")
    p.add_argument("--override", action="append", default=[], help="mbo-run config override")
    p.add_argument("--out", type=Path, default=RESULTS / "conservatism")
    p.add_argument("--report", action="store_true", help="only aggregate existing runs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = ("python experiments/bench_conservatism.py "
               + shlex.join(sys.argv[1:] if argv is None else argv))
    if not args.report:
        (args.out / "runs").mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            for regime in args.regimes:
                path = args.out / "runs" / f"{regime}__seed{seed}.json"
                if not path.exists():
                    atomic_write_text(path, json.dumps(run_one(regime, seed, args)))
    report(args, command)


if __name__ == "__main__":
    main()
