"""Benchmark: how close is the pretrained prior to the distribution it was trained on?

For each task, the prior of the app's ``diffusion`` settings (``mbo-run``'s config with ``--override``
on top, cached exactly as ``mbo-run`` caches it) is measured on:

- held-out NELBO per token: on fresh draws from the corpus distribution where the task can make them
  (Ehrlich: new chain samples), else on a 5 % split the model was not trained on (TFBind8, whose
  corpus is a fixed table; that model is trained on the other 95 %);
- the gap to the exact entropy per token where the task knows it (Ehrlich: from the chain's
  transition matrix); for masked diffusion NELBO = −log p for exact conditionals, so the gap is the
  prior's exact distance from the truth (up to the Monte Carlo error, reported);
- the feasible fraction of 2,000 samples under several samplers (Ehrlich), letter and adjacent 2-mer
  frequencies of samples against the corpus (TFBind8);
- wall time: pretraining (recorded in the cache entry when it was trained) and sampling.

Run: ``.venv/bin/python experiments/bench_pretrain.py --tasks ehrlich32 ehrlich64 tfbind8
--out experiments/results/pretrain`` (one JSON per task under ``OUT/runs/``, resumable; ``--report``
aggregates them into ``OUT.md`` and ``OUT.json``).
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
from omegaconf import OmegaConf

from mbo.atomic import atomic_write_text
from mbo.checkpoint import load_checkpoint
from mbo.config import compose_config
from mbo.diffusion import FirstHittingSampler, GridSampler
from mbo.diffusion.cache import cache_path, pretrained_diffusion

# Named tasks: mbo-run overrides. The first three are the issue's; the rest check that one recipe
# holds on instances it was not chosen on (other seeds, state counts and lengths).
TASKS = {
    "ehrlich32": ["task=ehrlich"],
    "ehrlich64": ["task=ehrlich", "task.length=64", "task.num_motifs=4"],
    "tfbind8": ["task=tfbind8"],
    "ehrlich32_seed1": ["task=ehrlich", "task.seed=1"],
    "ehrlich32_seed2": ["task=ehrlich", "task.seed=2"],
    "ehrlich16_48": ["task=ehrlich", "task.num_states=16", "task.length=48", "task.num_motifs=3",
                     "task.seed=3"],
    "ehrlich8_16": ["task=ehrlich", "task.num_states=8", "task.length=16", "task.seed=4",
                    "task.motif_length=3", "task.quantization=3"],
    "ehrlich64_32": ["task=ehrlich", "task.num_states=64", "task.seed=5"],
    "ehrlich32_128": ["task=ehrlich", "task.length=128", "task.num_motifs=4", "task.seed=6"],
}
# Sampled at min-p 1e-3, Ehrlich's rule when these were measured (its default is 1e-2 since:
# mbo/conf/task_defaults/ehrlich.yaml).
TASKS = {name: [*o, "diffusion.min_prob=0.001"] if name.startswith("ehrlich") else o
         for name, o in TASKS.items()}
SAMPLERS = {"grid32": GridSampler(32), "grid128": GridSampler(128), "first_hitting": FirstHittingSampler()}
N_HELD, N_SAMPLES, ELBO_T = 2000, 2000, 32


@torch.no_grad()
def nelbo(model, x: torch.Tensor, seed: int) -> tuple[float, float]:
    """Mean NELBO per token over the rows of ``x (N, L)`` and its standard error."""
    gen = torch.Generator().manual_seed(seed)
    per_seq = torch.cat([-model.elbo(chunk, n_samples=ELBO_T, generator=gen) for chunk in x.split(256)])
    per_tok = per_seq / x.shape[1]
    return float(per_tok.mean()), float(per_tok.std() / len(per_tok) ** 0.5)


def frequencies(x: torch.Tensor, v: int, k: int) -> torch.Tensor:
    """Frequencies of the k-mers starting at each position, ``(L - k + 1, V**k)``."""
    codes = sum(x[:, i: x.shape[1] - k + 1 + i] * v ** (k - 1 - i) for i in range(k))
    return torch.nn.functional.one_hot(codes, v**k).float().mean(0)


def run_task(name: str, overrides: list[str], progress: bool) -> dict:
    cfg = compose_config("config", [*TASKS[name], *overrides])
    task = instantiate(cfg.task)
    v = task.alphabet.size
    corpus = task.pretrain_corpus()
    fresh = task.fresh_corpus(N_HELD, torch.Generator().manual_seed(12345))
    if fresh is None:  # a fixed table: train on 95 %, hold out the rest
        perm = torch.randperm(len(corpus), generator=torch.Generator().manual_seed(0))
        n_held = max(1, round(0.05 * len(corpus)))
        held, corpus = corpus[perm[:n_held]], corpus[perm[n_held:]]
    else:
        held = fresh
    t = time.perf_counter()
    model = pretrained_diffusion(corpus, v, cfg.diffusion, cfg.cache_dir, name=task.name, progress=progress)
    load_s = time.perf_counter() - t
    _, meta = load_checkpoint(cache_path(corpus, v, cfg.diffusion, cfg.cache_dir, task.name))
    trained = meta.get("trained", {})
    out = {"task": name, "task_name": task.name, "overrides": [*TASKS[name], *overrides],
           "diffusion": OmegaConf.to_container(cfg.diffusion, resolve=True),
           "n_params": sum(p.numel() for p in model.parameters()), "corpus": len(corpus),
           "held_out": len(held), "held_out_kind": "fresh draws" if fresh is not None else "5% split",
           "train_s": trained.get("seconds"), "train_threads": trained.get("threads"),
           "final_train_loss": trained.get("final_loss"), "load_s": load_s}
    out["nelbo"], out["nelbo_se"] = nelbo(model, held, seed=1)
    out["nelbo_train"], _ = nelbo(model, corpus[:N_HELD], seed=2)
    entropy = task.corpus_entropy()
    if entropy is not None:
        out["entropy"], out["gap"] = entropy, out["nelbo"] - entropy
    out["samplers"] = {}
    for sname, sampler in SAMPLERS.items():
        gen = torch.Generator().manual_seed(3)
        t = time.perf_counter()
        x = model.sample(N_SAMPLES, sampler=sampler, generator=gen)
        row = {"sample_s": time.perf_counter() - t}
        if hasattr(task, "is_feasible"):
            row["feasible"] = float(task.is_feasible(x).float().mean())
        else:
            row["letter_diff"] = float((frequencies(x, v, 1) - frequencies(corpus, v, 1)).abs().max())
            row["pair_diff"] = float((frequencies(x, v, 2) - frequencies(corpus, v, 2)).abs().max())
        out["samplers"][sname] = row
    out["default_sampler"] = type(model.sampler).__name__
    print(f"{name}: NELBO {out['nelbo']:.4f} ± {out['nelbo_se']:.4f}"
          + (f", gap {out['gap']:+.4f}" if "gap" in out else "")
          + "".join(f", {k} {v.get('feasible', v.get('pair_diff')):.4f}" for k, v in out["samplers"].items())
          + f"; trained in {out['train_s'] or float('nan'):.0f} s", flush=True)
    return out


def report(out: Path, command: str) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    order = {name: i for i, name in enumerate(TASKS)}
    runs.sort(key=lambda r: order.get(r["task"], 99))
    lines = ["# Pretrained priors: held-out NELBO, exact-entropy gap, feasibility", "",
             f"Command: `{command}`", "",
             f"torch {torch.__version__}, {platform.machine()} CPU; 'train s' is the wall time of the run "
             "that trained the cached checkpoint, on the threads in brackets. NELBO per token "
             f"(nats) with {ELBO_T} stratified times per sequence on {N_HELD} held-out sequences (± standard "
             "error); gap = NELBO − exact entropy per token of the corpus distribution; feasible: fraction "
             f"of {N_SAMPLES} samples whose every transition is allowed.", "",
             "| task | params | train s | held-out NELBO | entropy | gap | feasible grid-32 | grid-128 "
             "| first-hitting | sample s (first-hitting) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        cells = [f"{r['task']} (`{r['task_name']}`)", f"{r['n_params']:,}",
                 f"{r['train_s']:.0f} ({r.get('train_threads') or '?'})" if r.get("train_s") else "–",
                 f"{r['nelbo']:.4f} ± {r['nelbo_se']:.4f}",
                 f"{r['entropy']:.4f}" if "entropy" in r else "–", f"{r['gap']:+.4f}" if "gap" in r else "–"]
        for k in ("grid32", "grid128", "first_hitting"):
            v = r["samplers"][k]
            cells.append(f"{v['feasible']:.4f}" if "feasible" in v else f"2-mer diff {v['pair_diff']:.3f}")
        cells.append(f"{r['samplers']['first_hitting']['sample_s']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Recipes (the `diffusion` settings of each run) are in the JSON beside this file.", ""]
    data = {"command": command, "runs": runs}
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines), overwrite=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(data, indent=1), overwrite=True)
    print("\n".join(lines))
    return data


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["ehrlich32", "ehrlich64", "tfbind8"], choices=list(TASKS))
    p.add_argument("--override", action="append", default=[], help="mbo-run config override (all tasks)")
    p.add_argument("--out", type=Path, required=True, help="results prefix (OUT.md, OUT.json, OUT/runs/)")
    p.add_argument("--report", action="store_true", help="only aggregate existing runs")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: several benchmarks share the cores)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python experiments/bench_pretrain.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    if not args.report:
        for name in args.tasks:
            path = args.out / "runs" / f"{name}.json"
            if not path.exists():
                rec = run_task(name, args.override, args.progress)
                rec["command"] = command
                atomic_write_text(path, json.dumps(rec, indent=1))
    report(args.out, command)


if __name__ == "__main__":
    main()
