"""Benchmark: the denoiser's sampling-time throughput against how many rows go through it at once.

Passes without gradient on CPU (sampling, ELBOs, guidance) go through the denoiser in parts of at
most :data:`mbo.diffusion.masked.TOKENS_PER_PASS` tokens (rows × L) and
:data:`~mbo.diffusion.masked.PAIRS_PER_PASS` position pairs (rows × L², a bound set for memory). This
measures what the part size costs in time:

- microseconds per token of one forward pass (no gradient, eval mode) of the default ``diffusion``
  group's denoiser, for each length and part size (``--rows`` per part, or ``--part-tokens``: rows =
  tokens // L), on ``--threads`` threads; each cell is the median of ``--repeats`` timings of passes
  over the same ``--tokens`` tokens. Parts larger than the pair bound are skipped: the library never
  makes them.
- with ``--sample-lengths``: the wall time of ``MaskedDiffusion.sample(--sample-n)`` (the default
  sampler, a freshly initialized default model) with today's token bound and without it (the pair
  bound alone), run alternately ``--repeats`` times, and whether both gave the same draws.

Run: ``.venv/bin/python experiments/bench_denoiser_parts.py --out experiments/results/denoiser_parts``
(writes OUT.md and OUT.json).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from experiments.report import write_aggregates
from mbo.config import compose_config
from mbo.diffusion import masked
from mbo.diffusion.masked import PAIRS_PER_PASS, TOKENS_PER_PASS
from mbo.diffusion.pretrain import build_diffusion

RESULTS = Path(__file__).parent / "results"


def microseconds_per_token(length: int, rows: int, tokens: int, repeats: int, vocab: int) -> float:
    """Median over ``repeats`` of the time per token to pass ``tokens`` tokens in parts of ``rows``."""
    torch.manual_seed(0)
    cfg = compose_config("config", ["task=ehrlich"]).diffusion.denoiser
    net = instantiate(cfg, vocab_size=vocab, length=length).eval()
    x = torch.nn.functional.one_hot(torch.randint(0, vocab + 1, (rows, length)), vocab + 1).float()
    passes = max(1, tokens // (rows * length))
    times = []
    with torch.no_grad():
        net(x)  # warm-up: first-call allocations
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(passes):
                net(x)
            times.append((time.perf_counter() - t) / (passes * rows * length) * 1e6)
    return statistics.median(times)


def sampling_seconds(length: int, n: int, repeats: int, vocab: int) -> dict:
    """Wall seconds of ``sample(n)`` with the token bound and without it (alternating, ``repeats`` each),
    and whether the two gave the same draws."""
    settings = compose_config("config", ["task=ehrlich"]).diffusion
    model = build_diffusion(settings, vocab, length).eval()
    times: dict[str, list[float]] = {"bounded": [], "pairs only": []}
    draws = {}
    try:
        for _ in range(repeats):
            for name, bound in (("bounded", TOKENS_PER_PASS), ("pairs only", PAIRS_PER_PASS)):
                masked.TOKENS_PER_PASS = bound
                t = time.perf_counter()
                draws[name] = model.sample(n, generator=torch.Generator().manual_seed(0))
                times[name].append(time.perf_counter() - t)
    finally:
        masked.TOKENS_PER_PASS = TOKENS_PER_PASS
    return {"length": length, "n": n, "seconds": times,
            "same_draws": bool(torch.equal(draws["bounded"], draws["pairs only"]))}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", nargs="+", type=int, default=[32, 64, 128, 256])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--rows", nargs="+", type=int, help="rows per part (default 16 64 256 1024 4096)")
    size.add_argument("--part-tokens", nargs="+", type=int, help="tokens per part instead of rows")
    p.add_argument("--tokens", type=int, default=1 << 18, help="tokens per timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vocab", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sample-lengths", nargs="*", type=int, default=[])
    p.add_argument("--sample-n", type=int, default=4096)
    p.add_argument("--out", type=Path, default=RESULTS / "denoiser_parts")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    given = sys.argv[1:] if argv is None else argv
    command = "python experiments/bench_denoiser_parts.py " + shlex.join(given)
    by_tokens = args.part_tokens is not None
    sizes = args.part_tokens if by_tokens else (args.rows or [16, 64, 256, 1024, 4096])
    cells = []
    for length in args.lengths:
        for size_ in sizes:
            rows = max(1, size_ // length) if by_tokens else size_
            if rows * length**2 > PAIRS_PER_PASS:
                continue  # a part the library never makes (and the score tensors would not fit)
            us = microseconds_per_token(length, rows, args.tokens, args.repeats, args.vocab)
            cells.append({"length": length, "size": size_, "rows": rows, "tokens": rows * length,
                          "pairs": rows * length**2, "us_per_token": us})
            print(f"L={length} rows={rows}: {us:.3f} us/token", flush=True)
    unit = "tokens" if by_tokens else "rows"
    lines = ["# Denoiser throughput against the size of a pass", "", f"Command: `{command}`", "",
             f"Microseconds per token, one forward pass without gradient (median of {args.repeats}); "
             f"V = {args.vocab}; the default `diffusion` denoiser; columns: {unit} per pass"
             + (" (rows = tokens // L)" if by_tokens else "") + ". Bounds today: "
             f"{PAIRS_PER_PASS:,} position pairs (rows × L²) per pass; on CPU without gradient also "
             f"{TOKENS_PER_PASS:,} tokens.", "",
             "| L | " + " | ".join(f"{s:,}" for s in sizes) + " |",
             "|---:|" + "---:|" * len(sizes)]
    for length in args.lengths:
        row = {c["size"]: c["us_per_token"] for c in cells if c["length"] == length}
        lines.append(f"| {length} | " + " | ".join(f"{row[s]:.2f}" if s in row else "–" for s in sizes)
                     + " |")
    sampling = []
    for length in args.sample_lengths:
        sampling.append(sampling_seconds(length, args.sample_n, args.repeats, args.vocab))
        print(f"sample L={length}: {sampling[-1]}", flush=True)
    if sampling:
        lines += ["", f"## `sample({args.sample_n})`, wall seconds: median (min–max) of {args.repeats}, "
                  "alternating", "",
                  f"| L | ≤ {TOKENS_PER_PASS:,} tokens a pass | pairs bound only | speed-up | same draws |",
                  "|---:|---:|---:|---:|---|"]
        for r in sampling:
            med = {k: statistics.median(v) for k, v in r["seconds"].items()}
            span = {k: f"{med[k]:.1f} ({min(v):.1f}–{max(v):.1f})" for k, v in r["seconds"].items()}
            same = "yes" if r["same_draws"] else "no"
            lines.append(f"| {r['length']} | {span['bounded']} | {span['pairs only']} | "
                         f"{med['pairs only'] / med['bounded']:.2f}× | {same} |")
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"threads {torch.get_num_threads()}.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_aggregates(args.out, {"command": command, "cells": cells, "sampling": sampling}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
