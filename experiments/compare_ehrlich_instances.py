"""Benchmark table: ``mbo-run``'s Ehrlich defaults on instances they were never chosen on.

The defaults of ``task=ehrlich`` (the dilated CNN ensemble, gradient guidance on the conservative
reward, min-p 1e-2) were chosen on Ehrlich(32, 32, 2 × 4) at ``task.seed`` 0-2. This table asks whether
they hold elsewhere: per instance, the true p50 and p100 of the designs and their feasible fraction,
beside the pretrained prior's own samples (drawn in the same run) and the best offline label, which
offline design should beat. It reads sweeps of ``mbo-run -m task=ehrlich <instance> seed=…`` (one
sweep per instance; each job's ``metrics.json``) and runs nothing itself.

Run: ``.venv/bin/python experiments/compare_ehrlich_instances.py --sweeps SWEEP … --out OUT``; writes
``OUT.md`` and ``OUT.json`` (every seed).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

from omegaconf import OmegaConf

from experiments.report import mean_se, plus_minus, write_aggregates
from experiments.summarize import finished_jobs


def sweep_rows(sweep: Path) -> list[dict]:
    """One row per finished job: instance, seed, the designs' and the prior's figures, best offline."""
    rows = []
    for job in finished_jobs(sweep):
        methods = job.result["methods"]
        name, designs = next((n, m) for n, m in methods.items() if n != "pretrained")
        prior = methods["pretrained"]
        rows.append({"instance": job.result["task"], "seed": int(job.result["seed"]), "method": name,
                     "n": designs["n"],
                     "p50": designs["true_p50"], "p100": designs["true_p100"],
                     "feasible": designs["feasible"], "prior_p50": prior["true_p50"],
                     "prior_p100": prior["true_p100"], "prior_feasible": prior["feasible"],
                     "best_offline": job.result["best_offline"],
                     "seconds": job.result["timings"]["total_s"], "run": str(job.dir)})
    return rows


def sweep_command(sweep: Path) -> str:
    """The ``mbo-run -m`` command that made ``sweep``, from its ``multirun.yaml``."""
    saved = OmegaConf.load(sweep / "multirun.yaml")
    given = OmegaConf.select(saved, "hydra.overrides.task") or []
    where = [o for o in OmegaConf.select(saved, "hydra.overrides.hydra") or [] if "sweep.dir" in o]
    return shlex.join(["mbo-run", "-m", *given, *where])


def table(rows: list[dict]) -> tuple[list[str], int]:
    """Markdown rows, and on how many instances the designs' mean p50 is above the best offline."""
    lines = ["| instance (best offline) | seeds | designs p50 | p100 | feasible | prior p50 | prior p100 "
             "| prior feasible | min | p50 > best offline? |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    above = 0
    for name in dict.fromkeys(r["instance"] for r in rows):
        mine = [r for r in rows if r["instance"] == name]
        best = mine[0]["best_offline"]
        p50 = mean_se([r["p50"] for r in mine])
        above += p50[0] > best
        keys = ("p100", "feasible", "prior_p50", "prior_p100", "prior_feasible")
        cells = [plus_minus(p50)] + [plus_minus(mean_se([r[k] for r in mine])) for k in keys]
        minutes = statistics.fmean(r["seconds"] for r in mine) / 60
        lines.append(f"| {name} ({best:.3f}) | {len(mine)} | {' | '.join(cells)} | {minutes:.1f} "
                     f"| {'yes' if p50[0] > best else 'no'} |")
    return lines, above


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweeps", nargs="+", type=Path, required=True,
                   help="mbo-run -m folders, one per instance")
    p.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    rows = [r for sweep in args.sweeps for r in sweep_rows(sweep)]
    lines, above = table(rows)
    instances = len(dict.fromkeys(r["instance"] for r in rows))
    text = "\n".join([
        "# mbo-run's Ehrlich defaults on unseen instances", "",
        f"Command: `{shlex.join(['python', 'experiments/compare_ehrlich_instances.py', *sys.argv[1:]])}`",
        "",
        "Instance names read ehrlich_s{states}_l{length}_m{motifs}x{motif length}_q{levels}_seed{seed}. "
        f"designs: mbo-run's {rows[0]['n']} designs with every default of task=ehrlich (method "
        f"{rows[0]['method']}); prior: as many samples of the pretrained model, drawn in the same run. "
        "p50 is the lower median with infeasible designs counted as the worst; ± is the standard error "
        "over seeds; min: minutes per run (one thread; an instance's first run pretrains its prior, the "
        "second loads it from the cache).", "",
        "The sweeps it reads (each job's metrics.json is kept beside this file, in its folder):", "",
        *(f"- `{sweep_command(sweep)}`" for sweep in args.sweeps), "",
        *lines, "",
        f"The designs' mean p50 is above the best offline label on {above} of {instances} instances.", ""])
    write_aggregates(args.out, rows, text)
    print(text)


if __name__ == "__main__":
    main()
