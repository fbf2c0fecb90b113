"""Peak memory of a pretraining step against the size of one layer's attention tensor.

Calibrates ``mbo.diffusion.pretrain.ATTENTION_COPIES``: each length runs two pretraining steps of the
default denoiser on a random corpus in a fresh process (so its peak resident memory is its own) and
reports the peak above the process's memory before training, per float of batch × heads × L² × depth/2.

    python -m experiments.bench_pretrain_memory --out experiments/results/pretrain_memory
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

from experiments.report import measured_in_children, write_aggregates

LENGTHS = (100, 200, 400, 600)


def measure(length: int, batch_size: int) -> dict:
    """One process's numbers for ``length`` (run in a child process by :func:`main`)."""
    import torch

    from mbo.config import compose_config
    from mbo.diffusion.cache import train_diffusion
    from mbo.diffusion.pretrain import pretraining_memory

    torch.set_num_threads(1)
    settings = compose_config("config", ["diffusion.pretrain.steps=2",
                                         f"diffusion.pretrain.batch_size={batch_size}"]).diffusion
    corpus = torch.randint(0, 4, (256, length), generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    train_diffusion(corpus, 4, settings)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    d = settings.denoiser
    floats = batch_size * d.heads * length**2 * d.depth / 2
    return {"length": length, "batch_size": batch_size, "peak_gib": peak / 2**30,
            "training_gib": (peak - before) / 2**30, "copies": (peak - before) / (4 * floats),
            "estimate_gib": pretraining_memory(length, settings) / 2**30}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="OUT.md and OUT.json are written")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child, args.batch_size)))
        return
    rows = measured_in_children("experiments.bench_pretrain_memory",
                                ["--out", str(args.out), "--batch-size", str(args.batch_size)],
                                [str(length) for length in LENGTHS])
    command = "python -m experiments.bench_pretrain_memory " + " ".join(argv or sys.argv[1:])
    lines = [f"Peak memory of two pretraining steps, default denoiser, batch {args.batch_size}, CPU, one "
             "thread, one process per length.", "", f"`{command}`", "",
             "| length | peak (GiB) | training (GiB) | floats per attention float | estimate (GiB) |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['length']} | {r['peak_gib']:.2f} | {r['training_gib']:.2f} | {r['copies']:.1f} | "
              f"{r['estimate_gib']:.2f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    write_aggregates(args.out, rows, text)


if __name__ == "__main__":
    main()
