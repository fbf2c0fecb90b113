"""``mbo-summarize SWEEP_DIR``: one table, CSV and plots for a Hydra multirun of ``mbo-run``.

Each job of a sweep is a directory holding ``.hydra/overrides.yaml`` (its settings) and, when it
finished, ``metrics.json``. A job counts as failed when its directory has no readable ``metrics.json``
(Hydra's job raised, or the process was killed, e.g. by a SLURM time limit). Jobs that never started
have no directory at all; they are found by expanding the sweep's overrides recorded in
``multirun.yaml`` the way Hydra's basic sweeper numbers them. Failed and missing jobs are listed in
every output, never dropped.

Writes into SWEEP_DIR (or ``--out``): ``summary.csv`` (one row per job and method),
``summary.md`` (mean ± std over seeds per setting), ``summary.json`` and ``summary_<param>.png``
(metric vs each swept parameter, one line per method, error bars = std over seeds).
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.report import COLUMNS
from mbo import jsonfile
from mbo.atomic import atomic_path, atomic_write_text
from mbo.cli import OneLineParser, stdout_reader_left
from mbo.display import column_format

# Shown in the Markdown table (those present); the CSV and JSON keep every scalar metric.
TABLE_METRICS = ("true_p100", "true_p50", "feasible", "pred_mean", "reward_mean", "overopt_gap", "novelty",
                 "diversity", "naturalness",
                 "frac_satisfied",  # mode=ctrl, per condition
                 "predicted_hypervolume", "predicted_gain")  # several objectives
# The first two a sweep has: BRAID runs plot the true scores, CTRL runs the satisfied fraction and diversity.
PLOT_METRICS = ("true_p100", "true_p50", "pred_mean", "reward_mean", "frac_satisfied", "diversity")
HEADERS = dict(COLUMNS)
OUTPUTS = ("summary.csv", "summary.md", "summary.json")
STALE = "stale"


@dataclass
class Job:
    """One job of a sweep: its number, its overrides and what it left behind.

    ``status`` is ``ok`` (``metrics.json`` read), ``failed`` (job directory without a readable
    ``metrics.json``), ``missing`` (no job directory: the job never started) or ``stale`` (a folder
    numbered past this sweep's jobs, left by an earlier sweep into the same folder; not counted).
    """

    num: int
    overrides: dict[str, str]
    dir: Path | None
    status: str
    result: dict | None = None
    error: str | None = None
    values: dict[str, object] = field(default_factory=dict)


def parse_value(text: str) -> object:
    """An override's value as a number when it reads as one (so ``c=0.5`` sorts and plots as 0.5)."""
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and re.fullmatch(r"[+-]?\d+", text.strip()) else number


def split_override(text: str) -> tuple[str, str]:
    """``key=value`` (with Hydra's ``+``/``++``/``~`` prefixes dropped from the key)."""
    key, sep, value = text.partition("=")
    return key.lstrip("+~"), value if sep else ""


def _expected_jobs(sweep_dir: Path) -> tuple[list[list[str]] | None, list[str]]:
    """The job override lists in Hydra's job-number order, and the swept keys, from ``multirun.yaml``.

    ``None`` when the sweep used a sweeper other than the basic one (its jobs cannot be re-derived).
    """
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None, []
    return sweep_jobs(OmegaConf.load(path).hydra)


def sweep_jobs(hydra_cfg: DictConfig, config_loader=None) -> tuple[list[list[str]] | None, list[str]]:
    """The job override lists of a sweep in Hydra's job-number order, and the swept keys, from its
    ``hydra`` settings (``multirun.yaml``'s, or the sweep's own as it starts).

    ``None`` when the sweep uses a sweeper other than the basic one, or sweeps a group's options by
    ``glob(...)`` and no Hydra ``config_loader`` is given to list them: its jobs cannot be re-derived.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    # The basic sweeper puts `hydra.sweeper.params` (sweeps written in a config) before the CLI's.
    # As written: a value such as task.path=${oc.env:DATA_DIR}/x.csv may resolve only in the job.
    def written(key: str) -> list | dict:
        node = OmegaConf.select(hydra_cfg, key, default=None)
        return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else []

    params = written("sweeper.params") or {}
    task = [f"{k}={v}" for k, v in params.items()] + written("overrides.task")
    overrides = OverridesParser.create(config_loader).parse_overrides(task)
    swept = [o.key_or_group.lstrip("+~") for o in overrides if o.is_sweep_override()]
    sweeper = str(OmegaConf.select(hydra_cfg, "sweeper._target_", default=""))
    if not sweeper.endswith("BasicSweeper"):
        return None, swept
    try:
        batches = BasicSweeper.split_arguments(overrides, None)
    except HydraException:  # a glob without a config loader
        return None, swept
    return [job for batch in batches for job in batch], swept


def _job_error(job_dir: Path) -> str:
    """Why a job has no metrics: its log's last error line, else its last line (the stage it reached).

    A launcher's own lines are passed over: submitit ends every job's log with "Job completed
    successfully", whatever the job did."""
    for log in sorted(job_dir.glob("*.log")):
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
                 if ln.strip() and not ln.startswith("[submitit]")]
        errors = [ln for ln in lines if "[ERROR]" in ln]
        if errors:
            return f"no metrics.json (raised); {errors[-1]}"
        if lines:
            return f"no metrics.json (raised, killed or still running); last log line: {lines[-1]}"
    if (job_dir.parent / ".submitit").is_dir():
        return f"no metrics.json, empty log; the job's own output is in {job_dir.parent / '.submitit'}"
    return "no metrics.json (raised, killed or still running); empty log"


def finished_jobs(sweep_dir: str | Path) -> list[Job]:
    """Every job of a sweep (:func:`load_sweep`), for a table that needs them all: a job that did not
    finish stops the caller with a message naming it."""
    jobs, _ = load_sweep(sweep_dir)
    for job in jobs:
        if job.status != "ok":
            raise SystemExit(f"{job.dir}: job {job.num} did not finish ({job.status}); rerun it first")
    return jobs


def load_sweep(sweep_dir: str | Path, replicate_key: str = "seed") -> tuple[list[Job], list[str]]:
    """All jobs of a sweep, sorted by job number (as integers), and the swept parameters.

    The swept parameters are the keys given with sweep syntax (``c=0,1``) in ``multirun.yaml``, or,
    without it, the override keys whose values differ between jobs; ``replicate_key`` (the seed) is
    kept out of them because results are averaged over it.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: not a directory")
    expected, swept = _expected_jobs(sweep_dir)
    jobs: dict[int, Job] = {}
    for hydra_yaml in sorted(sweep_dir.rglob(".hydra/hydra.yaml")):
        job_dir = hydra_yaml.parent.parent
        if job_dir == sweep_dir:
            continue
        num = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.num")
        overrides_path = hydra_yaml.parent / "overrides.yaml"
        listed = OmegaConf.to_container(OmegaConf.load(overrides_path)) if overrides_path.is_file() else []
        overrides = dict(split_override(str(o)) for o in listed)
        if num is None:
            # A job re-run by hand into its own folder from its saved config is a single run: its
            # number is its folder's name, and its settings (with no overrides of its own) the sweep's.
            if job_dir.parent != sweep_dir or not job_dir.name.isdigit():
                raise ValueError(f"{job_dir} holds a single mbo-run, not a job of a sweep; name the sweep's "
                                 "folder (hydra.sweep.dir of `mbo-run -m`)")
            num = int(job_dir.name)
            if not overrides and expected is not None and num < len(expected):
                overrides = dict(map(split_override, expected[num]))
        job = Job(num=int(num), overrides=overrides, dir=job_dir, status="failed")
        metrics_path = job_dir / "metrics.json"
        if metrics_path.is_file():
            try:
                job.result = jsonfile.loads(metrics_path.read_text())
                job.result["methods"] = _rows(job.result)
                job.status = "ok"
            except (ValueError, AttributeError) as err:
                job.result, job.error = None, f"{metrics_path}: unreadable ({err})"
        else:
            job.error = _job_error(job_dir)
        if expected is not None and job.num >= len(expected):
            # An earlier, larger sweep into the same folder left it; this sweep has no such job.
            job.status, job.error = STALE, f"left by an earlier sweep into {sweep_dir}; not counted"
        if job.num in jobs:
            raise ValueError(f"{sweep_dir}: job number {job.num} appears twice "
                             f"({jobs[job.num].dir} and {job_dir}); is this two sweeps in one directory?")
        jobs[job.num] = job

    for num, listed in enumerate(expected or []):
        if num not in jobs:
            jobs[num] = Job(num=num, overrides=dict(map(split_override, listed)), dir=None,
                            status="missing", error="no job directory: the job never started")
    if not jobs and (sweep_dir / ".hydra" / "hydra.yaml").is_file():  # `mbo-summarize RUN_DIR`
        raise ValueError(f"{sweep_dir} holds a single mbo-run, not a sweep; name the sweep's folder "
                         "(hydra.sweep.dir of `mbo-run -m`)")
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no Hydra job directories (.hydra/hydra.yaml) and no "
                                "multirun.yaml; is this the sweep directory of `mbo-run -m`?")
    ordered = [jobs[n] for n in sorted(jobs)]
    overridden = sorted({k for j in ordered for k in j.overrides})
    if replicate_key != "seed" and replicate_key not in overridden:  # a misspelt key would average nothing
        raise ValueError(f"--replicate-key {replicate_key}: no job overrides it; the jobs override "
                         f"{', '.join(overridden) or 'nothing'}")
    if not swept:
        current = [j for j in ordered if j.status != STALE]
        keys = sorted({k for j in current for k in j.overrides})
        swept = [k for k in keys if len({j.overrides.get(k) for j in current}) > 1]
    swept = [k for k in swept if k != replicate_key]
    for job in ordered:
        job.values = {k: parse_value(job.overrides.get(k, "")) for k in [*swept, replicate_key]}
    return ordered, swept


def counted(jobs: Sequence[Job]) -> list[Job]:
    """The jobs of this sweep: all but the folders an earlier sweep left."""
    return [j for j in jobs if j.status != STALE]


def _rows(result: dict) -> dict:
    """A job's rows of metrics: ``mbo-run``'s methods, CTRL's conditions (``mode=ctrl``), or the plate
    of a run with several objectives (its Pareto figures, under the design method's name)."""
    if isinstance(result.get("methods"), dict):
        return result["methods"]
    if isinstance(result.get("conditions"), dict):
        return result["conditions"]
    if isinstance(result.get("pareto"), dict) and isinstance(result.get("designs"), dict):
        return {str(result["designs"].get("method", "designs")): result["pareto"]}
    raise ValueError("no 'methods', 'conditions' or 'pareto' mapping")


def _scalar_metrics(jobs: Sequence[Job]) -> list[str]:
    """Every scalar metric any method of any finished job reports, in first-seen order."""
    names: dict[str, None] = {}
    for job in jobs:
        for metrics in (job.result or {}).get("methods", {}).values():
            for k, v in metrics.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    names.setdefault(k)
    return list(names)


def _methods(jobs: Sequence[Job]) -> list[str]:
    names: dict[str, None] = {}
    for job in jobs:
        for m in (job.result or {}).get("methods", {}):
            names.setdefault(m)
    return list(names)


def _planned_methods(job: Job) -> list[str]:
    """The rows a job that did not finish would have reported, by its own config: ``pretrained`` and its
    design method's (``finetuned`` without an inference-time method; the method's alone with several
    objectives), or with ``mode=ctrl`` its conditions' names; ``["?"]`` where the config cannot say.

    The config is the one Hydra saved in the job's folder when it started, or, for a job that never
    started, the sweep's config composed with the job's overrides."""
    from mbo.config import compose_config

    saved = job.dir / ".hydra" / "config.yaml" if job.dir is not None else None
    try:
        if saved is not None and saved.is_file():
            cfg = OmegaConf.load(saved)
        else:
            cfg = compose_config("config", [f"{k}={v}" for k, v in job.overrides.items()])
        if OmegaConf.select(cfg, "mode") == "ctrl":
            from mbo.ctrl.conditions import parse_condition

            factors = [str(f.name) for f in cfg.ctrl.factors]
            conditions = [parse_condition(c) for c in cfg.ctrl.conditions]
            return ["_".join(f"{f}-{c[f]}" for f in factors if f in c) or "any" for c in conditions]
        target = OmegaConf.select(cfg, "method._target_")
        name = str(target).rsplit(".", 1)[-1] if target else "finetuned"
        labels = OmegaConf.select(cfg, "task.label_column")
        several = OmegaConf.is_list(labels) and len(labels) > 1
    except (ValueError, OSError, TypeError, yaml.YAMLError, OmegaConfBaseException):
        return ["?"]  # unreadable, or written for another version of the configs
    return [name] if several else ["pretrained", name]


def _sort_key(value: object) -> tuple:
    return (0, value, "") if isinstance(value, int | float) else (1, 0, str(value))


def aggregate(jobs: Sequence[Job], swept: Sequence[str]) -> list[dict]:
    """Mean and std (over seeds, ``ddof=1``) of every metric, per setting of the swept keys and method.

    Returns one dict per (setting, method): ``setting`` (swept key → value), ``method``, ``n_ok``,
    ``n_jobs``, and ``metrics`` (name → ``{"mean", "std"}``; std is NaN for a single seed).
    """
    jobs = counted(jobs)
    settings: dict[tuple, list[Job]] = {}
    for job in jobs:
        settings.setdefault(tuple(job.values[k] for k in swept), []).append(job)
    metric_names = _scalar_metrics(jobs)
    rows = []
    for setting in sorted(settings, key=lambda s: tuple(_sort_key(v) for v in s)):
        group = settings[setting]
        ok = [j for j in group if j.status == "ok"]
        # The rows its finished jobs report (a swept `method` group changes them). With none finished,
        # the rows its own config names: the other settings' rows named methods it never ran.
        names = _methods(ok) if ok else list(dict.fromkeys(m for job in group for m in _planned_methods(job)))
        for method in names:
            stats = {}
            for name in metric_names:
                values = [float(j.result["methods"][method][name]) for j in ok
                          if name in j.result["methods"].get(method, {})]
                # -inf is a score (every design infeasible) and drags the mean with it; NaN is no value.
                values = [v for v in values if not math.isnan(v)]
                if values:
                    finite = all(math.isfinite(v) for v in values)
                    spread = statistics.stdev(values) if len(values) > 1 and finite else math.nan
                    stats[name] = {"mean": statistics.fmean(values) if finite else sum(values) / len(values),
                                   "std": spread}
            rows.append({"setting": dict(zip(swept, setting, strict=True)), "method": method,
                         "n_ok": len(ok), "n_jobs": len(group), "metrics": stats})
    return rows


def summary_csv(jobs: Sequence[Job], swept: Sequence[str], replicate_key: str = "seed") -> str:
    """One row per job and method (one row with empty metrics for a failed or missing job)."""
    metric_names = _scalar_metrics(jobs)
    keys = [*swept, replicate_key]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["job", "status", *map(_column, keys), "method", *metric_names, "total_s", "dir",
                     "overrides", "error"])
    for job in jobs:
        # The seed a job did not override is its default, which metrics.json records.
        common = [job.num, job.status, *(job.overrides.get(k, (job.result or {}).get(k, "")) for k in keys)]
        tail = [job.dir or "", " ".join(f"{k}={v}" for k, v in job.overrides.items()), job.error or ""]
        if job.status != "ok":
            writer.writerow([*common, "", *([""] * len(metric_names)), "", *tail])
            continue
        total = job.result.get("timings", {}).get("total_s", "")
        for method, metrics in job.result["methods"].items():
            writer.writerow([*common, method, *(metrics.get(k, "") for k in metric_names), total, *tail])
    return out.getvalue()


def _column(key: str) -> str:
    """A swept key's column name; ``method``, the config group, is not the column of metrics rows."""
    return "setting.method" if key == "method" else key


def _cells(stats: list[dict | None]) -> list[str]:
    """One metric's ``mean ± std`` cells, in one format for the whole column (:mod:`mbo.display`)."""
    spec = column_format(s["mean"] for s in stats if s is not None)
    return ["" if s is None else format(s["mean"], spec) if math.isnan(s["std"])
            else f"{s['mean']:{spec}} ± {s['std']:{spec}}" for s in stats]


def summary_markdown(jobs: Sequence[Job], swept: Sequence[str], rows: Sequence[dict],
                     title: str = "Sweep summary") -> str:
    """Mean ± std over seeds per setting and method, then the jobs that did not finish."""
    present = {k for r in rows for k in r["metrics"]}
    metrics = [k for k in TABLE_METRICS if k in present]
    n_ok = sum(j.status == "ok" for j in jobs)
    n_jobs = len(counted(jobs))
    lines = [f"# {title}", "",
             f"{n_jobs} jobs: {n_ok} finished, {n_jobs - n_ok} failed or missing. "
             "Cells are mean ± std over seeds (sample std); `jobs` = finished/launched.", "",
             "| " + " | ".join([*map(_column, swept), "method", "jobs",
                                *(HEADERS.get(k, k) for k in metrics)]) + " |",
             "|" + "---|" * (len(swept) + 2) + "---:|" * len(metrics)]
    columns = [_cells([r["metrics"].get(k) for r in rows]) for k in metrics]
    for i, r in enumerate(rows):
        cells = [str(r["setting"][k]) for k in swept]
        cells += [r["method"], f"{r['n_ok']}/{r['n_jobs']}", *(column[i] for column in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    bad = [j for j in counted(jobs) if j.status != "ok"]
    lines += ["", "## Failed or missing jobs", ""]
    if not bad:
        lines.append("None.")
    for j in bad:
        overrides = " ".join(f"{k}={v}" for k, v in j.overrides.items())
        lines.append(f"- job {j.num} ({j.status}): `{overrides}` — {j.error}"
                     + (f" (`{j.dir}`)" if j.dir else ""))
    stale = [str(j.num) for j in jobs if j.status == STALE]
    if stale:
        lines += ["", f"Job folder(s) {', '.join(stale)} were left by an earlier, larger sweep into this "
                      "folder; they are not part of this sweep and are not counted."]
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plot_sweep(rows: Sequence[dict], swept: Sequence[str], outdir: Path,
               overwrite: bool = False) -> list[Path]:
    """``summary_<param>.png`` per swept parameter: metric vs that parameter, one line per method.

    One column of panels per combination of the other swept parameters, one row per plotted metric.
    """
    present = {k for r in rows for k in r["metrics"]}
    metrics = [k for k in PLOT_METRICS if k in present][:2]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    paths: list[Path] = []
    if not metrics:
        return paths
    for param in swept:
        others = [k for k in swept if k != param]
        x_values = sorted({r["setting"][param] for r in rows}, key=_sort_key)
        numeric = all(isinstance(v, int | float) for v in x_values)
        # Values that span a decade or more, all positive, read best on a log axis.
        geometric = (numeric and len(x_values) > 2 and min(x_values) > 0
                     and max(x_values) >= 10 * min(x_values))
        combos = list(product(*(sorted({r["setting"][k] for r in rows}, key=_sort_key) for k in others)))
        fig, axes = plt.subplots(len(metrics), len(combos), figsize=(4 * len(combos), 3 * len(metrics)),
                                 squeeze=False, sharex=True)
        for col, combo in enumerate(combos):
            fixed = dict(zip(others, combo, strict=True))
            for row, metric in enumerate(metrics):
                ax = axes[row, col]
                for method in methods:
                    pts = [(r["setting"][param], r["metrics"][metric]) for r in rows
                           if r["method"] == method and metric in r["metrics"]
                           and all(r["setting"][k] == v for k, v in fixed.items())]
                    pts.sort(key=lambda p: _sort_key(p[0]))
                    if not pts:
                        continue
                    xs = [p[0] if numeric else x_values.index(p[0]) for p in pts]
                    ys = [p[1]["mean"] for p in pts]
                    err = [0.0 if not math.isfinite(p[1]["std"]) else p[1]["std"] for p in pts]
                    line = ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=method)[0]
                    for x, y in zip(xs, ys, strict=True):
                        if not math.isfinite(y):  # a mean of -inf (infeasible designs) has no height
                            ax.scatter([x], [0], marker="v", s=40, color=line.get_color(), clip_on=False,
                                       transform=ax.get_xaxis_transform())
                            ax.annotate(f"{y}", (x, 0), xycoords=ax.get_xaxis_transform(), xytext=(4, 4),
                                        textcoords="offset points", fontsize=7, color=line.get_color())
                if not numeric:
                    ax.set_xticks(range(len(x_values)), [str(v) for v in x_values])
                elif geometric:  # 1, 2, 4 … 32 or 0.01 … 0.1: evenly spaced, each value labeled
                    ax.set_xscale("log")
                    ax.set_xticks(x_values, [str(v) for v in x_values])
                    ax.minorticks_off()
                ax.set_ylabel(HEADERS.get(metric, metric))
                if row == 0:
                    ax.set_title(", ".join(f"{k}={v}" for k, v in fixed.items()) or param)
                if row == len(metrics) - 1:
                    ax.set_xlabel(param)
                ax.grid(alpha=0.3)
        axes[0, 0].legend()
        fig.suptitle("mean ± sample std over seeds (no bar: one seed; ▼ at the bottom: a mean of -inf)",
                     fontsize=8)
        fig.tight_layout()
        path = outdir / f"summary_{_safe(param)}.png"
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def summarize(sweep_dir: str | Path, out: str | Path | None = None, replicate_key: str = "seed",
              overwrite: bool = False, plots: bool = True) -> dict:
    """Write ``summary.{csv,md,json}`` and the plots for one sweep; returns the JSON summary."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():  # before making the output folder, which would be this one by default
        raise FileNotFoundError(f"{sweep_dir}: {'not a folder' if sweep_dir.exists() else 'does not exist'}")
    outdir = Path(out) if out is not None else sweep_dir
    outdir.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        existing = [outdir / n for n in OUTPUTS if (outdir / n).exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace the summary")
    jobs, swept = load_sweep(sweep_dir, replicate_key)
    rows = aggregate(jobs, swept)
    summary = {
        "sweep_dir": str(sweep_dir),
        "swept": list(swept),
        "replicate_key": replicate_key,
        "n_jobs": len(counted(jobs)),
        "n_ok": sum(j.status == "ok" for j in jobs),
        "jobs": [{"job": j.num, "status": j.status, "overrides": j.overrides,
                  "dir": str(j.dir) if j.dir else None, "error": j.error,
                  "total_s": (j.result or {}).get("timings", {}).get("total_s")} for j in jobs],
        "settings": rows,
    }
    atomic_write_text(outdir / "summary.csv", summary_csv(jobs, swept, replicate_key), overwrite=overwrite)
    atomic_write_text(outdir / "summary.md", summary_markdown(jobs, swept, rows, f"Sweep {sweep_dir.name}"),
                      overwrite=overwrite)
    text = jsonfile.dumps(summary, indent=2)
    atomic_write_text(outdir / "summary.json", text, overwrite=overwrite)
    summary["plots"] = [str(p) for p in plot_sweep(rows, swept, outdir, overwrite)] if plots else []
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="mbo-summarize", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the sweep directory of `mbo-run -m` (hydra.sweep.dir)")
    parser.add_argument("--out", help="where to write the summary (default: SWEEP_DIR)")
    parser.add_argument("--replicate-key", default="seed", help="override averaged over (default: seed)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing summary")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.sweep_dir, args.out, args.replicate_key, args.overwrite,
                            plots=not args.no_plots)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"mbo-summarize: {err}", file=sys.stderr)
        return 2
    outdir = Path(args.out or args.sweep_dir)
    bad = summary["n_jobs"] - summary["n_ok"]
    try:
        print((outdir / "summary.md").read_text())
        print(f"wrote {outdir / 'summary.csv'}, summary.md, summary.json and {len(summary['plots'])} plot(s)"
              + (f"; {bad} job(s) failed or missing" if bad else ""))
    except BrokenPipeError:  # `mbo-summarize DIR | head`: the files are written; the reader left early
        stdout_reader_left()
    return 0


if __name__ == "__main__":
    sys.exit(main())
