"""The run's human-facing outputs: a summary table on stdout and ``report.md`` with PNG plots."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

from mbo.active.pareto import pareto_mask
from mbo.atomic import atomic_path, atomic_write_text
from mbo.data.alphabet import one_hot
from mbo.display import formatted, plural


def mean_se(xs: list[float]) -> tuple[float, float]:
    """Mean and standard error over seeds (``nan`` for one seed, or when a value is not finite, as a
    p50 of -inf is when most designs are infeasible)."""
    m = statistics.fmean(xs)
    finite = all(math.isfinite(x) for x in xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 and finite else float("nan"))


def plus_minus(ms: tuple[float, float], fmt: str = ".3f") -> str:
    """``mean ± se`` as text; the mean alone when there is no standard error."""
    m, se = ms
    return f"{m:{fmt}}" if math.isnan(se) else f"{m:{fmt}} ± {se:{fmt}}"


def write_aggregates(out: Path, runs: list[dict] | dict, text: str) -> None:
    """``OUT.md`` (``text``) and ``OUT.json`` (``runs``: a benchmark's records), replacing earlier ones.
    Beside an ``OUT/runs`` folder they are rebuilt from its runs each time; the runs themselves are
    never overwritten."""
    atomic_write_text(out.with_suffix(".md"), text, overwrite=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(runs, indent=1), overwrite=True)


def measured_in_children(module: str, args: list[str], cases: list[str]) -> list[dict]:
    """Run ``python -m module *args --child CASE`` for each case, one fresh process each (so a peak
    resident memory is that case's own), and return the JSON line each prints last."""
    rows = []
    for case in cases:
        child = [sys.executable, "-m", module, *args, "--child", case]
        out = subprocess.run(child, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def arms_table(runs: list[dict], metrics: tuple[tuple[str, str], ...], seconds: str = "fit_s") -> list[str]:
    """A Markdown table, one row per arm of ``runs[i]["arms"]`` and one ``mean ± se`` column over the
    runs (seeds) per ``(key, header)`` of ``metrics``; the ``seconds`` column to one decimal."""
    lines = ["| model | " + " | ".join(h for _, h in metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for arm in runs[0]["arms"]:
        cells = [plus_minus(mean_se([r["arms"][arm][k] for r in runs]), ".1f" if k == seconds else ".3f")
                 for k, _ in metrics]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


COLUMNS = [("true_p100", "true p100"), ("true_p50", "true p50"), ("feasible", "feasible"),
           ("pred_mean", "pred mean"), ("pred_std", "pred std"), ("reward_mean", "cons. reward"),
           ("overopt_gap", "overopt gap"), ("novelty", "novelty"), ("frac_in_offline", "in offline"),
           ("diversity", "diversity"), ("naturalness", "ELBO")]


def summary_table(result: dict) -> str:
    """A Markdown table, one row per method, of the metrics present."""
    methods = result["methods"]
    cols = [(k, h) for k, h in COLUMNS if any(k in m for m in methods.values())]
    lines = ["| method | " + " | ".join(h for _, h in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    columns = [formatted(m.get(k) for m in methods.values()) for k, _ in cols]
    for i, name in enumerate(methods):
        lines.append(f"| {name} | " + " | ".join(column[i] for column in columns) + " |")
    return "\n".join(lines)


def best_offline_text(result: dict) -> str:
    """The best offline label: normalized where a benchmark defines the scale, else in the file's units."""
    if result.get("has_oracle", True):
        return f"best offline (normalized) {result['best_offline']:.3f}"
    return f"best offline label {result['best_offline_label']:.6g} (in the label column's units)"


def data_lines(result: dict) -> list[str]:
    """What the run read and wrote, in sentences for report.md."""
    d = result.get("designs", {})
    lines = [f"Offline data: {result.get('n_offline', '?')} sequences; {best_offline_text(result)}."]
    if result.get("replicates_merged"):
        lines.append(f"Replicates: {result['replicates_merged']} rows measured a sequence already in the "
                     f"file and were merged into it (see task.replicates).")
    if d:
        lines.append(f"Designs: the {d['written']} best by the conservative reward ({d['asked']} asked "
                     f"for) among {plural(d.get('candidates', d['written']), 'distinct candidate')}, "
                     f"{'possibly' if d['include_offline'] else 'none'} from the offline data, from "
                     f"{d['sampled']} samples ({d.get('method', 'finetuned')}); designs.csv, designs.fasta.")
        if d.get("constraints", "none") != "none":
            lines.append(f"Constraints: {d['constraints']}; {d['rejected']} sampled designs broke a global "
                         f"rule and were drawn again (none is written).")
        if d.get("reward_calls"):
            lines.append(f"Cost of the inference-time method: {d['reward_calls']:,} reward calls, "
                         f"{d['network_calls']:,} network calls.")
        if "target" in d:
            g = d["target"]
            lines.append(f"Fine-tuning reached J/α = {g['objective']:.3f} of its maximum log Z = "
                         f"{g['log_z']:.3f} (gap {g['gap']:.3f} nats = KL to the target; KL to the prior "
                         f"{g['kl']:.3f} nats). All three are estimates from sampled trajectories "
                         f"(target_samples): a gap near 0, or below it, is within their error.")
    if result.get("auto"):
        a = result["auto"]
        lines.append(f"Chosen from the offline data (conservative.c=auto, finetune.alpha=auto): "
                     f"c = {a['c']:g}, α = {a['alpha']:g}, the best judged median of "
                     f"{plural(len(a.get('trials', {})), 'trial setting')} (metrics.json: auto.trials).")
    if "provenance" in result:
        p = result["provenance"]
        lines.append(f"Provenance (every row of designs.csv carries it): run `{p['run_id']}`, command "
                     f"`{p['command']}`, method {p['method']}, seed {p['seed']}, settings sha256 "
                     f"{p['config_sha256'][:16]}… (.hydra/config.yaml), pretrained weights sha256 "
                     f"{p['pretrained_sha256'][:16]}…, " + tuned_text(p['model_sha256']) + ".")
    return lines


TABLE_NOTE = ("pretrained: as many plain samples of the prior, duplicates and offline sequences allowed; "
              "the method's row: its designs, as written. true p50: the median, with an even count the "
              "lower of the two middle values (infeasible designs count as the worst). overopt gap: mean "
              "predicted − mean true score, over the feasible designs. cons. reward: the reward the designs "
              "were ranked by, in the labels' units (pred mean − c · pred std for BRAID).")


def tuned_text(sha: str) -> str:
    """The fine-tuned checkpoint's line of the provenance: its hash, or why there is none."""
    if sha.startswith("none"):
        return f"no fine-tuned checkpoint ({sha.removeprefix('none').strip(' ()')})"
    return f"fine-tuned weights sha256 {sha[:16]}… (finetuned.safetensors)"


def print_summary(result: dict) -> None:
    print(f"\n{result['task']}  seed={result['seed']}  {best_offline_text(result)}  "
          f"total {result['timings']['total_s']:.1f}s")
    print(summary_table(result))


def _savefig(fig, path: Path) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


@torch.no_grad()
def write_report(outdir: Path, result: dict, designs: dict, task, reward_model, reward,
                 history: list[dict]) -> None:
    """``report.md`` plus ``rewards.png``, ``pred_vs_true.png`` (with an oracle), ``history.png``."""
    outdir = Path(outdir)
    vocab = task.alphabet.size
    has_oracle = task.has_oracle
    panels = 2 if has_oracle else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5), squeeze=False)
    for name, x in designs.items():
        # float64: 30 bins of float32 rewards that sit far from 0 in a narrow range (labels such as
        # 1,000,001.2 … 1,000,003.9) would be narrower than float32 can tell apart.
        axes[0, 0].hist(reward(one_hot(x, vocab)).double().numpy(), bins=30, alpha=0.6, label=name)
        if has_oracle:
            true = task.oracle(x).double()
            ok = torch.isfinite(true)
            # An infeasible design (-inf) has no bin: the legend counts it instead.
            dropped = f" ({int((~ok).sum())} infeasible, not drawn)" if not ok.all() else ""
            axes[0, 1].hist(true[ok].numpy(), bins=30, alpha=0.6, label=name + dropped)
    axes[0, 0].set(title="conservative reward", xlabel="r_c(x)", ylabel="designs")
    if has_oracle:
        axes[0, 1].axvline(result["best_offline"], color="k", ls="--", label="best offline")
        axes[0, 1].set(title="true score (oracle)", xlabel="normalized score")
    for ax in axes[0]:
        ax.legend(fontsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count of designs
    _savefig(fig, outdir / "rewards.png")
    plots = ["rewards.png"]

    if has_oracle:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        infeasible = []
        for name, x in designs.items():
            mean, std = reward_model.mean_std(one_hot(x, vocab))
            true = task.oracle(x)
            ok = torch.isfinite(true)
            line = ax.errorbar(true[ok].numpy(), mean[ok].numpy(), yerr=std[ok].numpy(), fmt="o", ms=3,
                               alpha=0.5, label=name)[0]
            infeasible.append((name, mean[~ok].numpy(), line.get_color()))
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        for name, predicted, color in infeasible:
            if len(predicted):  # true score -inf: shown at the left edge, at the height predicted for it
                ax.scatter([lo] * len(predicted), predicted, marker="x", s=20, color=color, clip_on=False,
                           label=f"{name}: {len(predicted)} infeasible (true -inf), at the left edge")
        ax.set_xlim(lo, hi)
        ax.set(xlabel="true score", ylabel="predicted mean ± std", title="model belief vs truth")
        ax.legend(fontsize=7, loc="best")
        _savefig(fig, outdir / "pred_vs_true.png")
        plots.append("pred_vs_true.png")

    if history:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
        it = [h["iteration"] for h in history]
        ax[0].plot(it, [h["reward"] for h in history], label="conservative reward")
        if "mean" in history[0]:
            ax[0].plot(it, [h["mean"] for h in history], label="predicted mean r̂")
            ax[0].plot(it, [h["g"] for h in history], label="uncertainty ĝ")
        # The fine-tuner's reward is in units of the labels' std (so α means the same at any scale),
        # not in the labels' units of the table's cons. reward.
        ax[0].set(xlabel="iteration", ylabel="reward / std of the labels", title="fine-tuning")
        ax[0].legend()
        ax[1].plot(it, [h["kl"] for h in history])
        ax[1].set(xlabel="iteration", ylabel="nats", title="KL to pretrained")
        _savefig(fig, outdir / "history.png")
        plots.append("history.png")

    text = [f"# mbo-run report: {result['task']} (seed {result['seed']})", "", *data_lines(result), "",
            summary_table(result), "", TABLE_NOTE, "", "Timings (s): " + ", ".join(
                f"{k} {v:.1f}" for k, v in result["timings"].items()), ""]
    text += [f"![{p}]({p})" for p in plots]
    atomic_write_text(outdir / "report.md", "\n".join(text) + "\n", overwrite=True)


def write_pareto_report(outdir: Path, result: dict, offline_labels: torch.Tensor,
                        predicted: torch.Tensor) -> None:
    """``report.md`` and ``pareto.png`` of a run with several objectives: the offline labels, their
    front, and the designs' predicted means (first two objectives), labels ``(N, k)``, means ``(n, k)``."""
    outdir = Path(outdir)
    names = result["objectives"]
    y, p = offline_labels.double(), predicted.double()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter(y[:, 0], y[:, 1], s=4, c="0.7", label="offline (measured)")
    # The front in the plane shown (with three objectives or more, the full front's points are not a
    # staircase there); "pre": between two points the boundary is at the lower one's height.
    front = y[pareto_mask(y[:, :2])][:, :2]
    front = front[front[:, 0].argsort()]
    ax.step(front[:, 0], front[:, 1], where="pre", c="k", lw=1,
            label="measured front" + (f" of {names[0]}, {names[1]}" if len(names) > 2 else ""))
    ax.scatter(p[:, 0], p[:, 1], s=10, c="C1", label="designs (predicted mean)")
    ax.set(xlabel=names[0], ylabel=names[1], title="designs against the measured Pareto front")
    ax.legend(fontsize=8)
    _savefig(fig, outdir / "pareto.png")
    d, hv = result["designs"], result["pareto"]
    text = [f"# mbo-run report: {result['task']} (seed {result['seed']})", "",
            f"Offline data: {result['n_offline']} sequences, {len(names)} objectives ({', '.join(names)}); "
            f"{hv['offline_front']} on the measured Pareto front.",
            f"Designs: {d['written']} chosen by {d['selection']} from {d['candidates']} distinct new "
            f"candidates ({d['method']} on the sum of the objectives, each in units of its labels' std); "
            f"{hv['designs_on_front']} on their own predicted front. Predicted hypervolume above the "
            f"worst measured values {hv['predicted_hypervolume']:.4g}; the measured front's "
            f"{hv['offline_hypervolume']:.4g}, which the designs would grow by {hv['predicted_gain']:.4g} "
            "if the models are right.",
            f"Constraints: {d['constraints']} ({d['rejected']} samples rejected).",
            *([f"{d['written']} designs of the {d['asked']} asked for: the candidates ran out."]
              if d["written"] < d["asked"] else []),
            *([f"{result['replicates_merged']} replicate rows merged into their sequences."]
              if result.get("replicates_merged") else []),
            *(["Chosen from the offline data (auto), per objective: " + "; ".join(
                f"{k}: c = {a['c']:g}, α = {a['alpha']:g}" for k, a in result["auto"].items())
               + " (metrics.json: auto; with finetune.alpha=auto the fine-tuner takes the largest α)."]
              if result.get("auto") else []),
            "", "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings"].items()), "",
            "![pareto.png](pareto.png)"]
    atomic_write_text(outdir / "report.md", "\n".join(text) + "\n", overwrite=True)
