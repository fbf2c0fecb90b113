"""Benchmark: pretrain masked diffusion on TFBind8's offline sequences; check fit and sampling.

Reports wall time, NELBO per token (train and a held-out 5%), per-position letter and adjacent
2-mer frequencies of samples against the corpus (max absolute difference, next to the noise floor of
the same number of draws from the corpus itself), and sampling throughput. Writes
``<out>.json`` and ``<out>.md`` (with the exact command).

    python experiments/bench_pretrain.py --overwrite
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from mbo.atomic import atomic_write_text
from mbo.checkpoint import save_checkpoint
from mbo.diffusion import (
    DEFAULT_SAMPLING_STEPS,
    MaskedDiffusion,
    TransformerDenoiser,
    pretrain,
)
from mbo.tasks.tfbind8 import TFBind8

TOL_LETTER = 0.03
TOL_2MER = 0.02


def letter_freqs(x: torch.Tensor, v: int) -> torch.Tensor:
    """``(N, L) -> (L, V)`` per-position letter frequencies."""
    return torch.nn.functional.one_hot(x, v).float().mean(0)


def pair_freqs(x: torch.Tensor, v: int) -> torch.Tensor:
    """``(N, L) -> (L-1, V*V)`` frequencies of adjacent 2-mers at each position."""
    pairs = x[:, :-1] * v + x[:, 1:]
    return torch.nn.functional.one_hot(pairs, v * v).float().mean(0)


def empirical_entropy(x: torch.Tensor) -> float:
    """Entropy (nats) of the empirical distribution of the rows of ``x``."""
    _, counts = torch.unique(x, dim=0, return_counts=True)
    p = counts.double() / counts.sum()
    return float(-(p * p.log()).sum())


@torch.no_grad()
def nelbo_per_token(model: MaskedDiffusion, x: torch.Tensor, n_samples: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for chunk in x.split(1024):
        total += float(-model.elbo(chunk, n_samples=n_samples, generator=gen).sum())
    return total / (x.shape[0] * x.shape[1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the cores are shared)")
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--sample-steps", type=int, default=DEFAULT_SAMPLING_STEPS)
    ap.add_argument("--elbo-samples", type=int, default=32, help="times t per sequence for NELBO")
    ap.add_argument("--out", default="experiments/results/pretrain_tfbind8")
    ap.add_argument("--checkpoint", default=None, help="also save the model here (.safetensors)")
    ap.add_argument("--overwrite", action="store_true", help="replace existing results/checkpoint")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    task = TFBind8()
    corpus = task.pretrain_corpus()
    n, length = corpus.shape
    v = 4
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    n_held = max(1, round(0.05 * n))
    held, train = corpus[perm[:n_held]], corpus[perm[n_held:]]

    torch.manual_seed(args.seed)
    net = TransformerDenoiser(v, length, dim=args.dim, depth=args.depth, heads=args.heads)
    model = MaskedDiffusion(net, v, length)
    n_params = sum(p.numel() for p in model.parameters())

    t0 = time.perf_counter()
    history = pretrain(
        model,
        train,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=0.01,
        warmup=100,
        seed=args.seed,
        progress=not args.no_progress,
        log_every=100,
    )
    train_time = time.perf_counter() - t0
    model.eval()

    train_eval = train[torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(1))]
    nelbo_train = nelbo_per_token(model, train_eval[:4096], args.elbo_samples, args.seed + 2)
    nelbo_held = nelbo_per_token(model, held, args.elbo_samples, args.seed + 3)

    gen = torch.Generator().manual_seed(args.seed + 4)
    t0 = time.perf_counter()
    samples = model.sample(args.samples, sampler=args.sample_steps, generator=gen)
    big_sample_time = time.perf_counter() - t0

    # Noise floor: the same statistics for as many draws (with replacement) from the corpus itself.
    ref_draw = corpus[torch.randint(0, n, (args.samples,), generator=torch.Generator().manual_seed(5))]
    letter_diff = (letter_freqs(samples, v) - letter_freqs(corpus, v)).abs().max().item()
    pair_diff = (pair_freqs(samples, v) - pair_freqs(corpus, v)).abs().max().item()
    letter_floor = (letter_freqs(ref_draw, v) - letter_freqs(corpus, v)).abs().max().item()
    pair_floor = (pair_freqs(ref_draw, v) - pair_freqs(corpus, v)).abs().max().item()

    # Throughput for a 128-design batch (the benchmark protocol's batch), median of 5 after warmup.
    model.sample(128, sampler=args.sample_steps)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        model.sample(128, sampler=args.sample_steps)
        times.append(time.perf_counter() - t0)
    t128 = sorted(times)[2]

    in_corpus = torch.isin(
        (samples * 4 ** torch.arange(length - 1, -1, -1)).sum(-1),
        (corpus * 4 ** torch.arange(length - 1, -1, -1)).sum(-1),
    )
    scores = task.oracle(samples)

    entropy = empirical_entropy(corpus) / length
    result = {
        "command": "python " + shlex.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "config": vars(args),
        "n_params": n_params,
        "corpus": {"rows": n, "length": length, "train": train.shape[0], "held_out": n_held},
        "platform": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "train_wall_s": train_time,
        "s_per_step": train_time / args.steps,
        "final_train_loss": history[-1]["loss"],
        "nelbo_per_token": {"train": nelbo_train, "held_out": nelbo_held},
        "entropy_per_token_empirical": entropy,
        "uniform_per_token": math.log(v),
        "freq_max_abs_diff": {
            "letter": letter_diff,
            "letter_noise_floor": letter_floor,
            "letter_tolerance": TOL_LETTER,
            "pair": pair_diff,
            "pair_noise_floor": pair_floor,
            "pair_tolerance": TOL_2MER,
        },
        "passes": {"letter": letter_diff <= TOL_LETTER, "pair": pair_diff <= TOL_2MER},
        "sampling": {
            "steps": args.sample_steps,
            "n": args.samples,
            "wall_s": big_sample_time,
            "seq_per_s_128": 128 / t128,
            "wall_s_128": t128,
        },
        "samples_in_corpus_fraction": in_corpus.float().mean().item(),
        "samples_oracle_mean": scores.mean().item(),
        "corpus_oracle_mean": task.oracle(corpus).mean().item(),
        "history": history,
    }

    rows = [
        ("params", f"{n_params:,}"),
        (
            "train wall time",
            f"{train_time:.1f} s ({args.steps} steps, {1000 * train_time / args.steps:.1f} ms/step)",
        ),
        ("NELBO/token train", f"{nelbo_train:.4f} nats"),
        ("NELBO/token held-out 5%", f"{nelbo_held:.4f} nats"),
        ("empirical entropy/token", f"{entropy:.4f} nats (uniform {math.log(v):.4f})"),
        ("letter freq max abs diff", f"{letter_diff:.4f} (tol {TOL_LETTER}, noise floor {letter_floor:.4f})"),
        ("2-mer freq max abs diff", f"{pair_diff:.4f} (tol {TOL_2MER}, noise floor {pair_floor:.4f})"),
        (
            "sampling, 128 designs",
            f"{128 / t128:.0f} seq/s ({t128 * 1000:.0f} ms, {args.sample_steps} steps)",
        ),
        ("samples in corpus", f"{in_corpus.float().mean().item():.3f}"),
        (
            "mean oracle: samples / corpus",
            f"{result['samples_oracle_mean']:.4f} / {result['corpus_oracle_mean']:.4f}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    table = "\n".join(f"{k:<{width}}  {val}" for k, val in rows)
    print(table)

    md = [
        "# Pretraining masked diffusion on TFBind8 (offline corpus)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU.",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {val} |" for k, val in rows],
        "",
        "NELBO is an upper bound on −log p per token (mean over "
        f"{args.elbo_samples} stratified times per sequence). The empirical entropy of the corpus is "
        "the best a model that memorizes the training rows could reach; a model that generalizes "
        "spreads mass over unseen 8-mers, so the held-out number is the one to read.",
        "Frequency differences are maxima over 8×4 letter cells and 7×16 adjacent 2-mer cells for "
        f"{args.samples} samples; the noise floor is the same statistic for {args.samples} draws "
        "from the corpus itself.",
        "",
    ]
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n", args.overwrite)
    atomic_write_text(out.with_suffix(".md"), "\n".join(md), args.overwrite)
    if args.checkpoint:
        save_checkpoint(args.checkpoint, model, overwrite=args.overwrite)
    return result


if __name__ == "__main__":
    main()
