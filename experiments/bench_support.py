"""Benchmark: how much of the fine-tuners' target falls off the prior's support, with and without min-p.

Every fine-tuner aims at p*(x) ∝ p_pre(x)·exp(r(x)/α), and VIDD distills its soft-optimal step
q(v) ∝ p_pre(v | x_t)·exp(value(v)/α). A softmax prior never gives a banned Ehrlich transition exactly
zero, and a reward model fitted on feasible sequences only does not know they are banned, so the tilt
can multiply a leak of 1e-5 by exp(Δvalue/α) into real mass. Per Ehrlich instance and seed this
measures, at states visited by the prior's own sampler (``--states`` per trajectory of 64):

- the prior's step mass on tokens that make a banned transition with an unmasked neighbour;
- the VIDD target's mass on them, for each α of ``--alphas`` and each min-p threshold of ``--min-probs``
  (applied to the prior's step, as ``diffusion.min_prob`` does for every model);
- the feasible fraction of ``--samples`` prior samples at each threshold.

The reward is the ``mbo-run`` default for Ehrlich offline design (a CNN ensemble's mean, in units of
the offline labels' std). Per-seed JSON goes to ``OUT/runs``.

Run: ``.venv/bin/python experiments/bench_support.py --seeds 0 1 2 --out experiments/results/support``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

from conservative import ScaledReward, label_scale
from experiments.report import mean_se, plus_minus
from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.diffusion.cache import pretrained_diffusion
from mbo.diffusion.policy import MinProbability
from mbo.finetune.vidd import _visited, soft_optimal_tokens

RESULTS = Path(__file__).parent / "results"
INSTANCES = {"L32": [], "L64": ["task.length=64", "task.num_motifs=4"]}


def banned_tokens(allowed: torch.Tensor, xt: torch.Tensor, position: torch.Tensor,
                  mask_id: int) -> torch.Tensor:
    """Bool ``(B, V)``: placing token v at ``position`` makes a banned transition with an unmasked
    neighbour of ``xt (B, L)`` (``allowed (V, V)``: transition a -> b is allowed)."""
    b, length = xt.shape
    v = allowed.shape[0]
    rows = torch.arange(b)
    tok = torch.arange(v).expand(b, v)
    ok = torch.ones(b, v, dtype=torch.bool)
    for shift, forward in ((-1, True), (1, False)):
        at = position + shift
        inside = (at >= 0) & (at < length)
        nb = xt[rows, at.clamp(0, length - 1)]
        has = inside & (nb != mask_id)
        nbv = nb[has][:, None].expand(-1, v)
        ok[has] &= allowed[nbv, tok[has]] if forward else allowed[tok[has], nbv]
    return ~ok


@torch.no_grad()
def run_one(instance: str, seed: int, args) -> dict:
    cfg = compose_config("config", ["task=ehrlich", "reward_model=conv_ensemble", f"seed={seed}",
                                    *INSTANCES[instance]])
    task = instantiate(cfg.task)
    offline = task.offline_dataset()
    pre = pretrained_diffusion(task.pretrain_corpus(), task.alphabet.size, cfg.diffusion, cfg.cache_dir,
                               name=task.name)
    pre.requires_grad_(False)
    pre.policy = None  # the raw prior; each threshold is applied below
    model = instantiate(cfg.reward_model).fit(offline, seed=seed)
    reward = ScaledReward(instantiate(cfg.conservative, c=0.0)(model), label_scale(offline.labels))
    gen = torch.Generator().manual_seed(seed)
    traj = pre.sample(64, generator=gen, return_trajectory=True)
    xt, pos, _ = _visited(traj.states, args.states, gen)
    b = xt.shape[0]
    log_pre = pre.policy_log_probs(pre.encode(xt))[torch.arange(b), pos]
    banned = banned_tokens(task.function.transition_matrix > 0, xt, pos, pre.mask_id)
    out = {"instance": instance, "seed": seed, "task": task.name, "states": b, "settings": _settings(args),
           "prior_mass": float((log_pre.exp() * banned).sum(1).mean()), "target_mass": {}, "feasible": {}}
    for mp in args.min_probs:
        # As diffusion.min_prob does for every model; the target is VIDD's own.
        pre.policy = MinProbability(mp) if mp > 0 else None
        for alpha in args.alphas:
            q = soft_optimal_tokens(pre, reward, xt, pos, alpha)
            out["target_mass"][f"{alpha:g}|{mp:g}"] = float((q * banned).sum(1).mean())
        x = torch.cat([pre.sample(500, generator=gen) for _ in range(args.samples // 500)])
        out["feasible"][f"{mp:g}"] = float(task.is_feasible(x).double().mean())
        print(f"{instance} seed {seed} min_p {mp:g}: prior samples feasible {out['feasible'][f'{mp:g}']:.4f}",
              flush=True)
    return out


def _settings(args) -> dict:
    """What a saved run was measured with; a run saved with other settings is not reused."""
    return {"states": args.states, "samples": args.samples, "alphas": list(args.alphas),
            "min_probs": list(args.min_probs)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", nargs="+", default=list(INSTANCES), choices=list(INSTANCES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--alphas", nargs="+", type=float, default=[0.01, 0.03, 0.1, 0.3])
    p.add_argument("--min-probs", nargs="+", type=float, default=[0.0, 1e-4, 1e-3, 1e-2])
    p.add_argument("--states", type=int, default=8)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--out", type=Path, default=RESULTS / "support")
    args = p.parse_args(argv)
    if args.samples < 500 or args.samples % 500:
        p.error(f"--samples must be a positive multiple of 500 (drawn 500 at a time), got {args.samples}")
    torch.set_num_threads(1)
    command = "python experiments/bench_support.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    runs = []
    for instance in args.instances:
        for seed in args.seeds:
            path = args.out / "runs" / f"{instance}_seed{seed}.json"
            if not path.exists():
                atomic_write_text(path, json.dumps(run_one(instance, seed, args)))
            run = json.loads(path.read_text())
            if run.get("settings") != _settings(args):
                sys.exit(f"{path}: saved with other settings ({run.get('settings', 'not recorded')}) than "
                         f"this command's ({_settings(args)}); remove it or use another --out")
            runs.append(run)
    lines = ["# The fine-tuners' target off the prior's support, with and without min-p (Ehrlich)", "",
             f"Command: `{command}`", "",
             f"torch {torch.__version__}, {platform.machine()} CPU, 1 thread. Mass on tokens that make a "
             "banned transition with an unmasked neighbour, averaged over states the prior's sampler visits; "
             "the VIDD target is p_pre(v | x_t)·exp(value(v)/α) with the CNN ensemble's mean (in units of "
             "the offline labels' std) as the value. Mean ± se over seeds.", ""]
    for instance in args.instances:
        rs = [r for r in runs if r["instance"] == instance]
        leak = plus_minus(mean_se([r["prior_mass"] for r in rs]), ".2e")
        lines += [f"## {instance} ({rs[0]['task']}, {len(rs)} seeds, {rs[0]['states']} states each)", "",
                  f"Prior's own step mass on banned tokens: {leak}.",
                  "", "| min_prob | prior samples feasible | "
                  + " | ".join(f"target mass, α = {a:g}" for a in args.alphas) + " |",
                  "|---:|---:|" + "---:|" * len(args.alphas)]
        for mp in args.min_probs:
            cells = [plus_minus(mean_se([r["target_mass"][f"{a:g}|{mp:g}"] for r in rs]), ".4f")
                     for a in args.alphas]
            lines.append(f"| {mp:g} | {plus_minus(mean_se([r['feasible'][f'{mp:g}'] for r in rs]), '.4f')} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    atomic_write_text(args.out.with_suffix(".md"), text, overwrite=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"command": command, "runs": runs}, indent=1),
                      overwrite=True)
    print(text)


if __name__ == "__main__":
    main()
