"""Benchmark table: ``mbo-run``'s designs against enumerating a plain ensemble, per TFBind8 landscape.

The goal it checks: on every PBM landscape, the true p50 of ``mbo-run``'s designs (the defaults) is at
least that of the top 128 of all 65,536 8-mers under a plain ensemble of 5 MLPs. It reads what two
existing tools wrote and runs nothing itself:

- sweeps of ``mbo-run -m task.landscape=… seed=…`` (each job's ``metrics.json`` and overrides);
- ``bench_guidance.py --methods exhaustive`` runs with the plain ensemble (``OUT/runs/*.json``), one
  folder per landscape, each run naming its landscape in its command.

Rows pair the two by landscape; seeds that both have give the paired difference (defaults − plain).

Run: ``.venv/bin/python experiments/compare_landscapes.py --sweeps SWEEP … --plain DIR … --out OUT``;
writes ``OUT.md`` and ``OUT.json`` (every seed of both columns).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
from pathlib import Path

from experiments.report import mean_se, plus_minus, write_aggregates
from experiments.summarize import finished_jobs


def landscape_name(value: str) -> str:
    """``SIX6_REF_R1`` from a shipped name or a raw table's path (``…/SIX6_REF_R1_8mers.txt``)."""
    return Path(value).name.removesuffix(".txt").removesuffix("_8mers")


def sweep_rows(sweep: Path) -> list[dict]:
    """One row per finished job of an ``mbo-run`` sweep: landscape, seed, p50, p100, best offline."""
    rows = []
    for job in finished_jobs(sweep):
        tuned = next(m for name, m in job.result["methods"].items() if name != "pretrained")
        rows.append({"landscape": landscape_name(job.overrides.get("task.landscape", "SIX6_REF_R1")),
                     "seed": int(job.result["seed"]), "p50": tuned["true_p50"], "p100": tuned["true_p100"],
                     "best_offline": job.result["best_offline"], "run": str(job.dir)})
    return rows


def plain_rows(folder: Path) -> list[dict]:
    """One row per ``bench_guidance.py`` exhaustive-search run in ``folder/runs``."""
    rows = []
    for path in sorted((folder / "runs").glob("*exhaustive*.json")):
        run = json.loads(path.read_text())
        given = dict(a.split("=", 1) for a in shlex.split(run["command"]) if re.match(r"task\.landscape=", a))
        rows.append({"landscape": landscape_name(given.get("task.landscape", "SIX6_REF_R1")),
                     "seed": int(run["seed"]), "p50": run["true_p50"], "p100": run["true_p100"],
                     "run": str(path)})
    return rows


def table(defaults: list[dict], plain: list[dict]) -> tuple[list[str], list[dict]]:
    """Markdown rows and a verdict per landscape, in the order the sweeps list them."""
    lines = ["| landscape (best offline) | seeds | defaults p50 | p100 | plain ensemble enumerated p50 "
             "| p100 | paired difference | defaults ≥ plain? |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    verdicts = []
    for name in dict.fromkeys(r["landscape"] for r in defaults):
        mine = {r["seed"]: r for r in defaults if r["landscape"] == name}
        theirs = {r["seed"]: r for r in plain if r["landscape"] == name}
        if not theirs:
            raise SystemExit(f"no plain-ensemble run for {name}; give its folder with --plain")
        both = sorted(mine.keys() & theirs.keys())
        diff = mean_se([mine[s]["p50"] - theirs[s]["p50"] for s in both])
        met = statistics.fmean(r["p50"] for r in mine.values()) >= statistics.fmean(
            r["p50"] for r in theirs.values())
        best = next(iter(mine.values()))["best_offline"]
        lines.append(f"| {name} ({best:.3f}) | {len(mine)} / {len(theirs)} "
                     f"| {plus_minus(mean_se([r['p50'] for r in mine.values()]))} "
                     f"| {statistics.fmean(r['p100'] for r in mine.values()):.3f} "
                     f"| {plus_minus(mean_se([r['p50'] for r in theirs.values()]))} "
                     f"| {statistics.fmean(r['p100'] for r in theirs.values()):.3f} "
                     f"| {diff[0]:+.3f} ± {diff[1]:.3f} ({len(both)} seeds) | {'yes' if met else 'no'} |")
        verdicts.append({"landscape": name, "met": met, "paired_difference": diff[0]})
    return lines, verdicts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", nargs="+", type=Path, required=True, help="mbo-run sweep folders")
    parser.add_argument("--plain", nargs="+", type=Path, required=True,
                        help="bench_guidance.py --methods exhaustive output folders (OUT, holding OUT/runs)")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    parser.add_argument("--title", default="TFBind8's defaults against enumerating a plain ensemble")
    args = parser.parse_args(argv)
    defaults = [r for s in args.sweeps for r in sweep_rows(s)]
    plain = [r for p in args.plain for r in plain_rows(p)]
    lines, verdicts = table(defaults, plain)
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "experiments/compare_landscapes.py", *given])
    met = sum(v["met"] for v in verdicts)
    text = "\n".join([
        f"# {args.title}", "", f"Command: `{command}`", "",
        "True p50 / p100 of 128 designs per run; mean ± standard error over seeds; seeds given as defaults / "
        "plain ensemble; the paired difference is defaults − plain over the seeds both have. p50 is the "
        "lower of the two middle values (64th of 128).", "", *lines, "",
        f"Defaults at least the plain ensemble (mean p50) on {met} of {len(verdicts)} landscapes.", ""])
    print(text)
    write_aggregates(args.out, [{**r, "column": "defaults"} for r in defaults]
                     + [{**r, "column": "plain_ensemble"} for r in plain], text)


if __name__ == "__main__":
    main()
