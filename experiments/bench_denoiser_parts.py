"""Benchmark: the denoiser's sampling-time throughput against how many rows go through it at once.

Every sampler and inference-time method passes its sequences through the denoiser in parts of at most
:data:`mbo.diffusion.masked.PAIRS_PER_PASS` position pairs (rows × L²), a bound set for memory. This
measures what the part size costs in time: microseconds per token of one forward pass (no gradient,
eval mode) of the default ``diffusion`` group's denoiser, for each length and rows per part, on
``--threads`` threads; each cell is the median of ``--repeats`` timings of passes over the same
``--tokens`` tokens. Parts larger than the bound are skipped: the library never makes them.

Run: ``.venv/bin/python experiments/bench_denoiser_parts.py --out experiments/results/denoiser_parts``
(writes OUT.md and OUT.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from mbo.atomic import atomic_write_text
from mbo.config import compose_config
from mbo.diffusion.masked import PAIRS_PER_PASS

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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", nargs="+", type=int, default=[32, 64, 128, 256])
    p.add_argument("--rows", nargs="+", type=int, default=[16, 64, 256, 1024, 4096])
    p.add_argument("--tokens", type=int, default=1 << 18, help="tokens per timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vocab", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "denoiser_parts")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    given = sys.argv[1:] if argv is None else argv
    command = "python experiments/bench_denoiser_parts.py " + shlex.join(given)
    cells = []
    for length in args.lengths:
        for rows in args.rows:
            if rows * length**2 > PAIRS_PER_PASS:
                continue  # a part the library never makes (and the score tensors would not fit)
            us = microseconds_per_token(length, rows, args.tokens, args.repeats, args.vocab)
            cells.append({"length": length, "rows": rows, "pairs": rows * length**2, "us_per_token": us})
            print(f"L={length} rows={rows}: {us:.3f} us/token", flush=True)
    lines = ["# Denoiser throughput against rows per pass", "", f"Command: `{command}`", "",
             f"Microseconds per token, one forward pass without gradient (median of {args.repeats}); "
             f"V = {args.vocab}; the default `diffusion` denoiser. Today's bound: "
             f"{PAIRS_PER_PASS:,} position pairs (rows × L²) per pass.", "",
             "| L | " + " | ".join(f"{r} rows" for r in args.rows) + " |",
             "|---:|" + "---:|" * len(args.rows)]
    for length in args.lengths:
        row = {c["rows"]: c["us_per_token"] for c in cells if c["length"] == length}
        lines.append(f"| {length} | " + " | ".join(f"{row[r]:.2f}" if r in row else "–" for r in args.rows)
                     + " |")
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"threads {torch.get_num_threads()}.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines), overwrite=True)
    atomic_write_text(args.out.with_suffix(".json"),
                      json.dumps({"command": command, "cells": cells}, indent=1), overwrite=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
