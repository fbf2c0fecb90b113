"""CTRL benchmark on TFBind8: "bind factor A strongly and factor B weakly" from offline labels.

    python experiments/bench_ctrl.py [--labels 2000 200] [--iterations 400] [--no-progress]

Setting (stated in the results file): the pretrained model is the app's (``mbo-run`` default task
TFBind8/SIX6_REF_R1, trained on its offline split, cached). Factors A = PAX6_REF_R1 and B = KLF1_REF_R1
(same PBM study). Each factor gets its OWN random sample of ``n`` rows of the pretraining corpus,
labeled by that factor's table (so A's and B's labels come from different "files"). Classes: high =
above the 90th percentile, low = at or below the 50th percentile of that factor's full-landscape
normalized scores. For each condition, 128 designs per method are scored by the TRUE tables.

Methods: CTRL (conditional fine-tuning, reward log p̂(c|x), KL weight 1); classifier guidance with the
same classifiers at sampling time (γ = 1); a conditional model trained from scratch on the labeled rows
(classifier-free style, w = 0); rejection sampling from the pretrained model with acceptance p̂(c|x)
from a pool whose denoiser evaluations equal CTRL's fine-tuning cost.
Writes ``experiments/results/ctrl_tfbind8.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.ctrl_run import condition_metrics, fit_classifier
from mbo.atomic import atomic_write_text
from mbo.ctrl import (
    ConditionLogProb,
    ConditionSampler,
    EnsembleClassifier,
    Factor,
    calibration,
    condition_name,
    conditional_from_scratch,
    encode_condition,
    finetune_ctrl,
    nfe_backprop,
    rejection_select,
    sample_cfg,
    sample_classifier_guided,
    train_conditional,
)
from mbo.data.alphabet import one_hot
from mbo.tasks.tfbind8 import TFBind8

RESULTS = Path(__file__).resolve().parent / "results"
# The app's classifier settings, so the benchmark measures what `mbo-run mode=ctrl` does.
CLASSIFIER = OmegaConf.load(Path(__file__).resolve().parent / "conf" / "ctrl" / "tfbind8.yaml").classifier
FACTORS = {"A": "PAX6_REF_R1", "B": "KLF1_REF_R1"}
CONDITIONS = ["A=high", "A=high,B=low", "A=low,B=high", "A=high,B=high"]
N_DESIGNS = 128
DESIGN_STEPS = 32


def app_pretrained(device: torch.device):
    """The app's cached pretrained model (trained now if the cache is empty)."""
    from hydra import compose, initialize_config_module

    from experiments.run import pretrained_diffusion

    with initialize_config_module("experiments.conf", version_base="1.3"):
        cfg = compose("config", overrides=["progress=false"])
    from hydra.utils import instantiate

    task = instantiate(cfg.task, _partial_=True)()
    return cfg, task, pretrained_diffusion(cfg, task, device)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[2000, 200])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--scratch-steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "ctrl_tfbind8"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # classifier inits draw from the global RNG
    progress = not args.no_progress
    device = torch.device("cpu")
    t_start = time.perf_counter()

    cfg, task, pretrained = app_pretrained(device)
    corpus = task.pretrain_corpus()
    oracles = {name: TFBind8(land) for name, land in FACTORS.items()}
    factors = []
    for name, o in oracles.items():
        full = o.full_dataset().labels.numpy()
        factors.append(Factor(name, (float(np.percentile(full, 50)), float(np.percentile(full, 90)))))
    codes = {condition_name(factors, encode_condition(factors, c)): encode_condition(factors, c)
             for c in CONDITIONS}
    oracle_list = [oracles[f.name] for f in factors]

    # Independent test rows for calibration: corpus rows not drawn for any label set.
    perm = torch.randperm(len(corpus), generator=torch.Generator().manual_seed(12345))
    test_tokens = corpus[perm[:5000]]
    pool_of_labels = corpus[perm[5000:]]

    # Base rates: the pretrained model unconditioned; and the rejection pool (shared by all settings).
    gen = torch.Generator().manual_seed(args.seed)
    base = pretrained.sample(N_DESIGNS, steps=DESIGN_STEPS, generator=gen)
    ft_kw = dict(batch_size=64, sampling_steps=16, backprop_steps=16, lr=3e-3, tau=1.0, hard=True)
    ctrl_nfe = nfe_backprop(args.iterations, ft_kw["batch_size"], ft_kw["sampling_steps"],
                            ft_kw["backprop_steps"])
    pool_size = ctrl_nfe // DESIGN_STEPS
    t = time.perf_counter()
    pool = torch.cat([pretrained.sample(4096, steps=DESIGN_STEPS, generator=gen)
                      for _ in range(math.ceil(pool_size / 4096))])[:pool_size]
    pool_s = time.perf_counter() - t
    pool_true = torch.stack([o.oracle(pool).double() for o in oracle_list], 1)

    results = {"setting": {
        "pretrained": "app default: TFBind8 SIX6_REF_R1 offline split (bottom 50%, 32,898 rows), "
                      f"{cfg.diffusion.pretrain.steps} steps, cached",
        "factors": {f.name: {"landscape": FACTORS[f.name], "edges": list(f.edges)} for f in factors},
        "classes": "low: normalized score <= 50th percentile of the factor's full landscape; "
                   "high: > 90th percentile",
        "labels": "per factor, an independent uniform sample of the SIX6 offline split (the "
                  "pretraining corpus), labeled by the factor's table",
        "conditions": CONDITIONS, "n_designs": N_DESIGNS, "design_steps": DESIGN_STEPS,
        "ctrl": {**ft_kw, "iterations": args.iterations, "gamma": 1.0, "kl_weight": 1.0,
                 "train_conditions": "list (the 4 conditions) + 10% all-null"},
        "ctrl_nfe": ctrl_nfe, "rejection_pool": pool_size, "scratch_steps": args.scratch_steps,
        "scratch_nfe": args.scratch_steps * 128 * 3, "seed": args.seed,
        "command": " ".join(["python", "experiments/bench_ctrl.py", *sys.argv[1:]]),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()},
        "pretrained": {}, "runs": {}}
    from mbo.ctrl import satisfies
    for name, code in codes.items():
        m = condition_metrics(base, code, factors, ConditionLogProb(factors, {
            f.name: EnsembleClassifier(8, 4, 3, 1) for f in factors}), oracle_list, pretrained, 4)
        m.pop("pred_log_p")
        m["pool_rate"] = satisfies(factors, pool_true, code).double().mean().item()
        results["pretrained"][name] = m

    for n_labels in args.labels:
        run = {"classifiers": {}, "methods": {}, "timings": {}}
        t = time.perf_counter()
        classifiers, label_sets = {}, {}
        for j, f in enumerate(factors):
            rows = torch.randperm(len(pool_of_labels),
                                  generator=torch.Generator().manual_seed(args.seed + 101 * (j + 1)))
            tokens = pool_of_labels[rows[:n_labels]]
            labels = oracles[f.name].oracle(tokens)
            clf, info = fit_classifier(f, tokens, labels, 4, CLASSIFIER, args.seed, device)
            classes = f.classify(labels)
            with torch.no_grad():
                cal = calibration(clf(one_hot(test_tokens, 4)),
                                  f.classify(oracles[f.name].oracle(test_tokens)))
            classifiers[f.name] = clf
            label_sets[f.name] = (tokens, classes)
            run["classifiers"][f.name] = {"class_counts": info["class_counts"],
                                          "temperature": info["temperature"], "test_calibration": cal}
        reward = ConditionLogProb(factors, classifiers, gamma=1.0)
        run["timings"]["classifiers_s"] = time.perf_counter() - t

        # CTRL
        t = time.perf_counter()
        sampler = ConditionSampler(factors, conditions=torch.stack(list(codes.values())), drop_prob=0.1)
        model, history = finetune_ctrl(pretrained, reward, sampler, iterations=args.iterations,
                                       seed=args.seed, progress=progress, **ft_kw)
        run["timings"]["ctrl_finetune_s"] = time.perf_counter() - t
        run["ctrl_history_tail"] = history[-1]
        # Conditional from scratch on the labeled rows (each row labeled for one factor only).
        t = time.perf_counter()
        scratch = conditional_from_scratch(pretrained.denoiser.config, [3, 3], 4, 8, seed=args.seed)
        tok = torch.cat([label_sets["A"][0], label_sets["B"][0]])
        ca, cb = label_sets["A"][1], label_sets["B"][1]
        cond = torch.cat([torch.stack([ca, torch.full_like(ca, 3)], 1),
                          torch.stack([torch.full_like(cb, 3), cb], 1)])
        train_conditional(scratch, tok, cond, steps=args.scratch_steps, seed=args.seed, progress=progress)
        run["timings"]["scratch_train_s"] = time.perf_counter() - t

        methods = {m: {} for m in ("ctrl", "classifier_guidance", "scratch_cfg", "rejection")}
        t = time.perf_counter()
        for name, code in codes.items():
            g = torch.Generator().manual_seed(args.seed)
            rows = code.expand(N_DESIGNS, -1)
            designs = {
                "ctrl": model.sample(N_DESIGNS, steps=DESIGN_STEPS, generator=g, cond=rows),
                "classifier_guidance": sample_classifier_guided(
                    pretrained, lambda x, c=code, r=reward: r(x, c.expand(x.shape[0], -1)), N_DESIGNS,
                    steps=DESIGN_STEPS, gamma=1.0, generator=g),
                "scratch_cfg": sample_cfg(scratch, code, N_DESIGNS, steps=DESIGN_STEPS, generator=g),
            }
            with torch.no_grad():
                log_acc = torch.cat([reward(one_hot(chunk, 4), code.expand(len(chunk), -1))
                                     for chunk in pool.split(8192)])
            designs["rejection"], accepted = rejection_select(pool, log_acc, N_DESIGNS, generator=g)
            for m, x in designs.items():
                methods[m][name] = condition_metrics(x, code, factors, reward, oracle_list, pretrained, 4)
            methods["rejection"][name]["accepted"] = accepted
        run["timings"]["sampling_eval_s"] = time.perf_counter() - t
        run["methods"] = methods
        results["runs"][str(n_labels)] = run
        print(f"labels={n_labels}: " + json.dumps({m: {k: round(v["frac_satisfied"], 3)
                                                       for k, v in d.items()} for m, d in methods.items()}))
    results["timings"] = {"pool_sampling_s": pool_s, "total_s": time.perf_counter() - t_start}
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(results, indent=2), overwrite=True)
    atomic_write_text(out.with_suffix(".md"), render_markdown(results), overwrite=True)
    return results


def render_markdown(r: dict) -> str:
    s = r["setting"]
    lines = ["# CTRL on TFBind8: conditions on two transcription factors from offline labels", "",
             f"Command: `{s.get('command', 'python experiments/bench_ctrl.py --no-progress')}` "
             f"(torch {s['torch']}, {s['threads']} thread, CPU, seed {s['seed']}; total "
             f"{r['timings']['total_s']:.0f} s).", "",
             f"- Pretrained model: {s['pretrained']}.",
             f"- Factors: A = {s['factors']['A']['landscape']}, B = {s['factors']['B']['landscape']} "
             "(same PBM study as SIX6). " + s["classes"] + ".",
             f"- Labels: {s['labels']}.",
             f"- {s['n_designs']} designs per condition and method, {s['design_steps']} sampling steps; "
             "satisfied = TRUE scores (both tables) meet the condition.",
             f"- CTRL: fine-tuning {s['ctrl']['iterations']} iterations × {s['ctrl']['batch_size']}, "
             f"{s['ctrl']['sampling_steps']}-step relaxed sampler, full backprop, KL weight 1, γ = 1; "
             f"{s['ctrl_nfe']:,} denoiser evaluations (rows × passes, backward = 2).",
             f"- Rejection: pool of {s['rejection_pool']:,} pretrained samples × {s['design_steps']} steps = "
             "CTRL's evaluations, shared by all conditions (CTRL's one model serves all of them too); "
             "accept with prob. p̂(c|x); if fewer than 128 are accepted the rest are the highest-p̂ "
             "rejects (column `acc`).",
             "- Classifier guidance: pretrained model, each step tilted by γ·∇log p̂(c|x̂₀), γ = 1.",
             f"- From scratch: conditional model of the same architecture trained {s['scratch_steps']} "
             f"steps × 128 on the labeled rows only (A rows carry A's class, B rows B's; 15% condition "
             f"dropout), sampled with w = 0; {s['scratch_nfe']:,} evaluations.", "",
             "Naturalness = mean ELBO under the pretrained model (nats/sequence, higher = more "
             "natural); diversity = mean pairwise Hamming distance (of 8).", "",
             "## Pretrained model, unconditioned (base rates)", "",
             "| condition | satisfied (128) | satisfied (pool) | diversity | naturalness |",
             "|---|---|---|---|---|"]
    for name, m in r["pretrained"].items():
        lines.append(f"| {name} | {m['frac_satisfied']:.3f} | {m['pool_rate']:.4f} | "
                     f"{m['diversity']:.2f} | {m['naturalness']:.2f} |")
    for n, run in r["runs"].items():
        lines += ["", f"## {n} labels per factor", "", "Classifier calibration on 5,000 held-out corpus "
                  "rows (true classes):", "", "| factor | counts low/mid/high | T | accuracy | NLL | "
                  "ECE (top) | ECE (classwise) |", "|---|---|---|---|---|---|---|"]
        for f, c in run["classifiers"].items():
            cc, cal = c["class_counts"], c["test_calibration"]
            lines.append(f"| {f} | {cc['low']}/{cc['mid']}/{cc['high']} | {c['temperature']:.2f} | "
                         f"{cal['accuracy']:.3f} | {cal['nll']:.3f} | {cal['ece']:.3f} | "
                         f"{cal['ece_classwise']:.3f} |")
        lines += ["", "| condition | method | satisfied | ± se | diversity | unique | naturalness | "
                  "log p̂(c\\|x) | acc |", "|---|---|---|---|---|---|---|---|---|"]
        for cond in r["pretrained"]:
            for method, per in run["methods"].items():
                m = per[cond]
                p = m["frac_satisfied"]
                lines.append(f"| {cond} | {method} | {p:.3f} | {math.sqrt(p * (1 - p) / m['n']):.3f} | "
                             f"{m['diversity']:.2f} | {m['unique']} | {m['naturalness']:.2f} | "
                             f"{m['pred_log_p']:.2f} | {m.get('accepted', '')} |")
        tm = run["timings"]
        lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in tm.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
