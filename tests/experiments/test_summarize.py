"""``mbo-summarize`` on a sweep directory laid out as Hydra writes it, with failed and missing jobs."""

import csv
import json
import math
import pathlib
import statistics

import pytest
import yaml

from experiments.summarize import aggregate, load_sweep, main, summarize, summary_markdown
from mbo import jsonfile

SWEEP = ["conservative.c=0,1", "seed=range(6)", "progress=false"]  # 12 jobs: numbers 10, 11 sort last
FAILED, MISSING = 3, 11


def p100(c, seed, method):
    return 0.5 + 0.1 * c + 0.01 * seed + (0.2 if method == "finetuned" else 0.0)


def make_sweep(root):
    """What ``mbo-run -m conservative.c=0,1 seed=range(6)`` leaves: job 3 raised, job 11 never ran."""
    root.mkdir()
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
        "overrides": {"task": SWEEP}}}))
    num = 0
    for c in (0, 1):
        for seed in range(6):
            if num != MISSING:
                job = root / str(num)
                (job / ".hydra").mkdir(parents=True)
                (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
                (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
                    [f"conservative.c={c}", f"seed={seed}", "progress=False"]))
                (job / "run.log").write_text("[INFO] - pretraining; will cache the model at /x\n")
                if num != FAILED:
                    methods = {m: {"true_p100": p100(c, seed, m), "pred_mean": 0.3, "n": 8}
                               for m in ("pretrained", "finetuned")}
                    (job / "metrics.json").write_text(json.dumps(
                        {"seed": seed, "methods": methods, "timings": {"total_s": 1.5}}))
            num += 1
    return root


def test_jobs_sorted_as_integers_with_failed_and_missing(tmp_path):
    jobs, swept = load_sweep(make_sweep(tmp_path / "sweep"))
    assert [j.num for j in jobs] == list(range(12))
    assert swept == ["conservative.c"]
    status = {j.num: j.status for j in jobs}
    assert status[FAILED] == "failed" and status[MISSING] == "missing"
    assert sum(s == "ok" for s in status.values()) == 10
    assert "no metrics.json" in jobs[FAILED].error and "pretraining" in jobs[FAILED].error
    assert jobs[MISSING].overrides["seed"] == "5" and jobs[MISSING].dir is None


def test_summary_files(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    summary = summarize(sweep)
    with (sweep / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    # one row per job and method; a failed or missing job keeps one row, with empty metrics
    assert [int(r["job"]) for r in rows][::2][:6] == [0, 1, 2, 3, 4, 5]
    assert [r["job"] for r in rows if r["status"] != "ok"] == [str(FAILED), str(MISSING)]
    assert len(rows) == 10 * 2 + 2
    assert rows[-1]["job"] == "11" and rows[-1]["true_p100"] == ""

    (c1_tuned,) = [s for s in summary["settings"]
                   if s["setting"] == {"conservative.c": 1} and s["method"] == "finetuned"]
    values = [p100(1, s, "finetuned") for s in range(5)]  # seed 5 of c=1 is the missing job 11
    assert (c1_tuned["n_ok"], c1_tuned["n_jobs"]) == (5, 6)
    assert math.isclose(c1_tuned["metrics"]["true_p100"]["mean"], statistics.fmean(values))
    assert math.isclose(c1_tuned["metrics"]["true_p100"]["std"], statistics.stdev(values))

    md = (sweep / "summary.md").read_text()
    assert f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}" in md
    assert "| 1 | finetuned | 5/6 |" in md
    assert f"job {FAILED} (failed)" in md and f"job {MISSING} (missing)" in md
    assert (sweep / "summary_conservative.c.png").stat().st_size > 1000
    saved = json.loads((sweep / "summary.json").read_text())
    assert saved["n_jobs"] == 12 and saved["n_ok"] == 10


def test_existing_summary_needs_overwrite(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    assert main([str(sweep), "--no-plots"]) == 0
    before = (sweep / "summary.csv").read_text()
    assert main([str(sweep), "--no-plots"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (sweep / "summary.csv").read_text() == before
    assert main([str(sweep), "--overwrite", "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "summary.md").is_file()


def test_not_a_sweep_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"multirun\.yaml"):
        load_sweep(tmp_path / "empty")
    assert main([str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "nowhere").exists()  # a mistyped sweep folder is not made
    with pytest.raises(FileNotFoundError, match="does not exist"):
        summarize(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        summarize(tmp_path / "file")


def test_minus_inf_is_a_score_not_a_missing_value(tmp_path):
    root = make_sweep(tmp_path / "sweep")
    for num, value in ((0, -math.inf), (1, 0.25)):  # c=0, seeds 0 and 1: every design infeasible in one
        path = root / str(num) / "metrics.json"
        result = json.loads(path.read_text())
        result["methods"]["finetuned"]["true_p50"] = value
        result["methods"]["finetuned"]["feasible"] = 0.0 if value < 0 else 1.0
        path.write_text(jsonfile.dumps(result))  # as mbo-run writes it: "-inf", strict JSON
    jobs, swept = load_sweep(root)
    rows = aggregate(jobs, swept)
    assert "| true p50 | feasible |" in summary_markdown(jobs, swept, rows)
    summarize(root, tmp_path / "summary", plots=False)
    text = (tmp_path / "summary" / "summary.json").read_text()
    assert '"mean": "-inf"' in text and "Infinity" not in text and "NaN" not in text
    row = next(r for r in rows if r["setting"]["conservative.c"] == 0 and r["method"] == "finetuned")
    assert row["metrics"]["true_p50"]["mean"] == -math.inf and math.isnan(row["metrics"]["true_p50"]["std"])
    assert row["metrics"]["feasible"]["mean"] == pytest.approx(0.5)


def test_ctrl_and_pareto_sweeps_are_summarized_not_failed(tmp_path):
    root = make_sweep(tmp_path / "sweep")
    for num, path in enumerate(sorted(root.glob("*/metrics.json"))):
        if num % 2:
            condition = {"frac_satisfied": 0.5, "diversity": 4.0, "target": {"gap": 0.3}}
            result = {"seed": 0, "mode": "ctrl", "conditions": {"A-high": condition}}
        else:
            result = {"seed": 0, "designs": {"method": "finetuned"},
                      "pareto": {"predicted_hypervolume": 0.7, "designs_on_front": 3}}
        path.write_text(json.dumps(result))
    jobs, swept = load_sweep(root)
    assert {j.status for j in jobs if j.num not in (FAILED, MISSING)} == {"ok"}
    text = summary_markdown(jobs, swept, aggregate(jobs, swept))
    assert "| A-high |" in text and "| finetuned |" in text and "frac_satisfied" in text


def test_a_ctrl_sweep_plots_satisfied_and_diversity(tmp_path):
    root = make_sweep(tmp_path / "sweep")
    for path in root.glob("*/metrics.json"):
        condition = {"frac_satisfied": 0.5, "diversity": 4.0}
        path.write_text(json.dumps({"seed": 0, "mode": "ctrl", "conditions": {"A-high": condition}}))
    summary = summarize(root, tmp_path / "summary")
    assert summary["plots"] and all(pathlib.Path(p).exists() for p in summary["plots"])


def test_a_job_rerun_by_hand_from_its_saved_config_counts_as_that_job(tmp_path):
    # `mbo-run -cp SWEEP/3/.hydra -cn config hydra.run.dir=SWEEP/3` leaves a single run's record there:
    # no job number, no overrides of its own.
    root = make_sweep(tmp_path / "sweep")
    (root / str(FAILED) / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    num: ???\n")
    (root / str(FAILED) / ".hydra" / "overrides.yaml").write_text("[]\n")
    (root / str(FAILED) / "metrics.json").write_text(json.dumps(
        {"seed": 3, "methods": {"finetuned": {"true_p100": 0.9}}}))
    jobs, swept = load_sweep(root)
    assert jobs[FAILED].status == "ok" and jobs[FAILED].overrides["seed"] == "3"
    assert swept == ["conservative.c"]
    outputs = tmp_path / "outputs"  # single runs are not a sweep
    make_sweep(outputs)
    (outputs / "multirun.yaml").unlink()
    (outputs / "run_a").mkdir()
    (outputs / "0").rename(outputs / "run_a" / "x")
    (outputs / "run_a" / "x" / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    num: ???\n")
    with pytest.raises(ValueError, match="holds a single mbo-run, not a job of a sweep"):
        load_sweep(outputs)
    # The single run's own folder: named as such, not as a folder without any Hydra record.
    assert main([str(outputs / "run_a" / "x")]) == 2
    with pytest.raises(ValueError, match=r"x holds a single mbo-run, not a sweep; name the sweep's folder"):
        load_sweep(outputs / "run_a" / "x")


def test_folders_of_an_earlier_larger_sweep_are_not_counted(tmp_path):
    root = make_sweep(tmp_path / "sweep")
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {  # the second sweep: 4 jobs
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
        "overrides": {"task": ["conservative.c=0,1", "seed=0,1"]}}}))
    for num in range(4):
        (root / str(num) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
            [f"conservative.c={num // 2}", f"seed={num % 2}"]))
    summary = summarize(root, plots=False)
    assert summary["n_jobs"] == 4 and [j["status"] for j in summary["jobs"]][4:] == ["stale"] * 7
    assert all(r["n_jobs"] == 2 for r in summary["settings"])
    assert "Job folder(s) 4, 5, 6, 7, 8, 9, 10 were left by an earlier" in (root / "summary.md").read_text()


def test_a_submitit_log_shows_the_jobs_error_not_the_launchers_last_line(tmp_path):
    root = make_sweep(tmp_path / "sweep")
    (root / str(FAILED) / "run.log").write_text(
        "[mbo-run][INFO] - pretraining\n[mbo-run][ERROR] - n_designs must be an integer >= 1, got 0\n"
        "[submitit][INFO] - Job completed successfully\n"
        "[submitit][INFO] - Exiting after successful completion\n")
    jobs, _ = load_sweep(root)
    assert jobs[FAILED].error.endswith("[mbo-run][ERROR] - n_designs must be an integer >= 1, got 0")


def test_a_swept_method_group_gets_its_own_column_and_only_its_rows(tmp_path):
    root = make_sweep(tmp_path / "sweep")
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
        "overrides": {"task": ["method=best_of_n,svdd_pm", "seed=range(6)"]}}}))
    for num in range(12):
        if num == MISSING:
            continue
        method = "best_of_n" if num < 6 else "svdd_pm"
        (root / str(num) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"method={method}",
                                                                                   f"seed={num % 6}"]))
        if num == FAILED:
            continue
        (root / str(num) / "metrics.json").write_text(json.dumps(
            {"seed": num % 6, "methods": {"pretrained": {"true_p100": 0.5}, method: {"true_p100": 0.7}}}))
    summary = summarize(root, plots=False)
    assert sorted((r["setting"]["method"], r["method"]) for r in summary["settings"]) == [
        ("best_of_n", "best_of_n"), ("best_of_n", "pretrained"),
        ("svdd_pm", "pretrained"), ("svdd_pm", "svdd_pm")]
    assert "| setting.method | method | jobs |" in (root / "summary.md").read_text()
    with (root / "summary.csv").open() as f:
        assert next(csv.reader(f))[:5] == ["job", "status", "setting.method", "seed", "method"]


def test_a_misspelt_replicate_key_is_refused(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep")
    assert main([str(sweep), "--no-plots", "--replicate-key", "seeds"]) == 2
    assert "--replicate-key seeds: no job overrides it; the jobs override conservative.c, progress, seed" in (
        capsys.readouterr().err)
    assert not (sweep / "summary.md").exists()


def test_sweep_jobs_keep_interpolations_as_written_and_give_up_on_globs():
    from omegaconf import OmegaConf

    from experiments.summarize import sweep_jobs

    basic = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    hydra = OmegaConf.create({"sweeper": {"_target_": basic, "params": {"seed": "0,1"}},
                              "overrides": {"task": ["task.path=${oc.env:ONLY_IN_THE_JOB}/x.csv"]}})
    path = r"task.path=$\{oc.env\:ONLY_IN_THE_JOB\}/x.csv"  # escaped, as Hydra passes it to the job
    assert sweep_jobs(hydra) == ([["seed=0", path], ["seed=1", path]], ["seed"])
    hydra.overrides.task = ["reward_model=glob(*)"]  # only Hydra's config loader knows a group's options
    assert sweep_jobs(hydra) == (None, ["seed", "reward_model"])


def test_a_setting_swept_over_a_decade_is_plotted_on_a_log_axis(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from experiments.summarize import plot_sweep

    scales = []
    monkeypatch.setattr(Axes, "set_xscale", lambda self, value, **kw: scales.append(value))
    rows = [{"setting": {"oversample": o, "c": c}, "method": "A-high",
             "metrics": {"frac_satisfied": {"mean": 0.1 * o, "std": 0.01}}}
            for o in (1, 4, 32) for c in (0, 1)]
    plot_sweep(rows, ["oversample", "c"], tmp_path)
    assert scales == ["log", "log"]  # oversample's two panels (c = 0, 1); c's own figure stays linear


def test_a_setting_that_did_not_finish_shows_its_own_methods_not_the_others(tmp_path):
    from omegaconf import OmegaConf

    from mbo.config import compose_config

    # `mbo-run -m method=svdd_pm,best_of_n,gradient`: svdd_pm's job exits 2 at runtime, best_of_n's
    # finishes, gradient's never starts. The two that did not finish took the rows best_of_n reported.
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
        "overrides": {"task": ["method=svdd_pm,best_of_n,gradient"]}}}))
    for num, method in enumerate(("svdd_pm", "best_of_n")):
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"method={method}"]))
        # What Hydra saves as the job starts: the composed config, unresolved.
        OmegaConf.save(compose_config("config", [f"method={method}"]), job / ".hydra" / "config.yaml")
    (root / "0" / "run.log").write_text("[mbo-run][ERROR] - svdd_pm: the reward is not differentiable\n")
    (root / "1" / "metrics.json").write_text(json.dumps(
        {"seed": 0, "methods": {"pretrained": {"true_p100": 0.5}, "best_of_n": {"true_p100": 0.7}}}))
    summary = summarize(root, plots=False)
    rows = {(r["setting"]["method"], r["method"]): (r["n_ok"], r["n_jobs"]) for r in summary["settings"]}
    assert rows == {("best_of_n", "pretrained"): (1, 1), ("best_of_n", "best_of_n"): (1, 1),
                    ("svdd_pm", "pretrained"): (0, 1), ("svdd_pm", "svdd_pm"): (0, 1),
                    ("gradient", "pretrained"): (0, 1), ("gradient", "gradient_guidance"): (0, 1)}
    md = (root / "summary.md").read_text()
    assert "| svdd_pm | svdd_pm | 0/1 |" in md and "| svdd_pm | best_of_n |" not in md
    assert "| gradient | gradient_guidance | 0/1 |" in md
