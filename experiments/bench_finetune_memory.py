"""Peak memory and time of one fine-tuning iteration against sequence length.

PPO and RWR rescore every step of each sampled trajectory under the policy with gradients, so the rows
of a denoiser pass are trajectories × L steps, each with L² attention pairs: all at once they grow as
L³; VIDD's targets try every token at each visited state, V times its batch in one pass. Each
(fine-tuner, length, vocabulary: 4 unless given) runs one iteration of one epoch (the default denoiser,
a random prior, the reward "count of letter 2") in a fresh process, so its peak resident memory is its
own; ``sample`` draws ``--batch-size`` designs instead, as ``mbo-run`` draws its candidates.
Run it once per code version (``PYTHONPATH`` pointing at a checkout) to compare them.

    python -m experiments.bench_finetune_memory --out experiments/results/finetune_memory
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from experiments.report import measured_in_children, write_aggregates

CASES = (("ppo", 32), ("ppo", 64), ("ppo", 96), ("rwr", 64), ("rwr", 96), ("vidd", 96))


def measure(finetuner: str, length: int, batch_size: int, vocab: int = 4) -> dict:
    """One process's numbers (run in a child process by :func:`main`)."""
    import torch

    from mbo.config import compose_config
    from mbo.diffusion.pretrain import build_diffusion
    from mbo.finetune import finetune_backprop, finetune_ppo, finetune_rwr, finetune_vidd

    torch.set_num_threads(1)
    settings = compose_config("config", []).diffusion
    model = build_diffusion(settings, vocab, length)

    def reward(x):
        return x[..., 2].sum(-1).float()

    common = {"alpha": 0.1, "iterations": 1, "batch_size": batch_size, "lr": 1e-3, "grad_clip": 1.0}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    start = time.perf_counter()
    if finetuner == "ppo":
        finetune_ppo(model, reward, epochs=1, clip=0.2, **common)
    elif finetuner == "rwr":
        finetune_rwr(model, reward, epochs=1, **common)
    elif finetuner == "vidd":
        finetune_vidd(model, reward, states_per_trajectory=4, **common)
    elif finetuner == "backprop":
        finetune_backprop(model, reward, backprop_steps=4, tau=1.0, hard=True, sampler=model.sampler,
                          **common)
    else:  # "sample": drawing batch_size designs, as mbo-run draws its candidates; 4 grid steps, since
        # the peak is one step's whatever the number of steps (the default takes L steps)
        model.sample(batch_size, sampler=4, generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"finetune": finetuner, "length": length, "vocab": vocab, "batch_size": batch_size,
            "seconds": seconds, "peak_gib": peak / 2**30, "finetune_gib": (peak - before) / 2**30}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="OUT.md and OUT.json are written")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cases", nargs="*", default=[f"{f}:{n}" for f, n in CASES],
                        help="fine-tuner:length or fine-tuner:length:vocab")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        finetuner, length, *vocab = args.child.split(":")
        print(json.dumps(measure(finetuner, int(length), args.batch_size, int(vocab[0]) if vocab else 4)))
        return
    rows = measured_in_children("experiments.bench_finetune_memory",
                                ["--out", str(args.out), "--batch-size", str(args.batch_size)], args.cases)
    command = "python -m experiments.bench_finetune_memory " + " ".join(argv or sys.argv[1:])
    lines = [f"One fine-tuning iteration (one epoch) of batch {args.batch_size}, or one draw of that many "
             "designs (`sample`), default denoiser, CPU, one thread, one process per case.", "",
             f"`{command}`", "",
             "| fine-tuner | length | vocabulary | peak (GiB) | fine-tuning (GiB) | seconds |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['finetune']} | {r['length']} | {r.get('vocab', 4)} | {r['peak_gib']:.2f} | "
              f"{r['finetune_gib']:.2f} | {r['seconds']:.0f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    write_aggregates(args.out, rows, text)


if __name__ == "__main__":
    main()
