"""The whole mbo-run pipeline on tiny configs: seconds, not minutes."""

import csv
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from experiments.run import check_settings, run
from mbo.config import SettingsError, compose_config
from mbo.data.io import DataError
from mbo.provenance import provenance, settings_sha256

TINY = [
    "diffusion.denoiser.dim=16", "diffusion.denoiser.depth=1", "diffusion.denoiser.heads=2",
    "diffusion.pretrain.steps=10", "diffusion.pretrain.batch_size=32",
    # A warmup past the last step is refused; at this lr each step keeps the rate the default warmup
    # (100 steps to 2e-3) gave it.
    "diffusion.pretrain.warmup=10", "diffusion.pretrain.lr=2e-4",
    "reward_model.num_members=2", "reward_model.epochs=1", "reward_model.hidden_dims=[8]",
    "reward_model.min_steps=0", "oversample=8",
    "finetune.iterations=2", "finetune.batch_size=8", "n_designs=16", "progress=false",
]


def read_rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def config(tmp_path, *overrides):
    return compose_config("config", [*TINY, f"cache_dir={tmp_path / 'cache'}", *overrides])


def test_tfbind8_pipeline_writes_all_outputs(tmp_path):
    out = tmp_path / "run"
    result = run(config(tmp_path), out)
    for name in ["designs.csv", "metrics.json", "history.json", "report.md", "rewards.png",
                 "pred_vs_true.png", "history.png"]:
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == result
    tuned = result["methods"]["finetuned"]
    assert 0 <= tuned["true_p50"] <= tuned["true_p100"] <= 1 and tuned["n"] == 16
    rows = read_rows(out / "designs.csv")
    assert len(rows) == 16 and {"sequence", "pred_mean", "pred_std", "conservative",
                                "true_score"} <= rows[0].keys()
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


def test_second_run_reuses_cached_pretrained_model(tmp_path):
    run(config(tmp_path), tmp_path / "a")
    second = run(config(tmp_path, "seed=1"), tmp_path / "b")
    assert second["timings"]["pretrain_s"] < 2.0
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


def test_inverse_folding_runs_end_to_end_with_its_corpus_in_the_runs_cache(tmp_path):
    result = run(config(tmp_path, "task=inverse_folding", "task.corpus_size=100", "task.offline_size=20",
                        "n_designs=4"), tmp_path / "run")
    assert result["methods"]["finetuned"]["feasible"] == 1.0
    assert len(list((tmp_path / "cache").glob("rnafold-corpus-*.npz"))) == 1


def test_csv_task_has_no_true_scores(tmp_path):
    data = tmp_path / "mine.csv"
    lines = ["seq,kd"] + [f"{a}{b}{c}{d}CG,{i * 0.1:.1f}" for i, (a, b, c, d) in enumerate(
        (a, b, c, d) for a in "ACGT" for b in "ACGT" for c in "ACGT" for d in "AC")]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    result = run(config(tmp_path, "task=csv", f"task.path={data}", "task.sequence_column=seq",
                       "task.label_column=kd"), out)
    assert "true_p100" not in result["methods"]["finetuned"] and result["best_offline"] is None
    rows = read_rows(out / "designs.csv")
    assert len(rows[0]["sequence"]) == 6 and "true_score" not in rows[0]
    assert (out / "report.md").is_file() and not (out / "pred_vs_true.png").exists()


@pytest.mark.parametrize("text, problem", [
    ("seq,kd\nACGT,1\nACGU,2\n", "row 3"),
    ("seq,kd\nACGT,1\nACGT\n", "row 3"),
    ("seq,kd\nACGT,1\nACG,nan\n", "row 3"),
    ("sequence,kd\nACGT,1\n", "seq"),
])
def test_bad_csv_is_refused_before_any_training(tmp_path, text, problem):
    data = tmp_path / "bad.csv"
    data.write_text(text)
    cfg = config(tmp_path, "task=csv", f"task.path={data}", "task.sequence_column=seq",
                 "task.label_column=kd")
    with pytest.raises(DataError, match=problem) as err:
        run(cfg, tmp_path / "run")
    assert "bad.csv" in str(err.value)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_stale_cache_entry_is_rebuilt(tmp_path):
    run(config(tmp_path), tmp_path / "a")
    (entry,) = (tmp_path / "cache").glob("*.safetensors")
    entry.write_bytes(b"not a checkpoint")
    run(config(tmp_path, "seed=1"), tmp_path / "b")
    (rebuilt,) = (tmp_path / "cache").glob("*.safetensors")
    assert rebuilt.stat().st_size > 100


def test_designs_are_distinct_new_ranked_and_named(tmp_path):
    out = tmp_path / "run"
    cfg = config(tmp_path)
    run(cfg, out)
    rows = read_rows(out / "designs.csv")
    seqs = [r["sequence"] for r in rows]
    assert len(seqs) == len(set(seqs)) == 16
    offline = set(instantiate(cfg.task).offline_dataset().sequences())
    assert not offline & set(seqs)
    assert [r["id"] for r in rows] == [f"design_{i:04d}" for i in range(1, 17)]
    assert [int(r["rank"]) for r in rows] == list(range(1, 17))
    scores = [float(r["conservative"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    fasta = (out / "designs.fasta").read_text().split("\n")
    assert fasta[:2] == [">design_0001", seqs[0]]


def write_labels(path, labels):
    seqs = [f"{a}{b}{c}{d}CG" for a in "ACGT" for b in "ACGT" for c in "ACGT" for d in "AC"]
    path.write_text("seq,kd\n" + "".join(f"{s},{y!r}\n" for s, y in zip(seqs, labels, strict=False)))
    return path


CSV = ["task=csv", "task.sequence_column=seq", "task.label_column=kd"]


def test_any_label_scale_trains_the_same_way(tmp_path):
    base = [0.1 * i for i in range(128)]
    outs = []
    for k, factor in enumerate((1.0, 1e30, 1e-9)):
        path = write_labels(tmp_path / f"s{k}.csv", [y * factor for y in base])
        out = tmp_path / f"run{k}"
        result = run(config(tmp_path, *CSV, f"task.path={path}"), out)
        outs.append([r["sequence"] for r in read_rows(out / "designs.csv")])
        assert result["best_offline_label"] == pytest.approx(12.7 * factor, rel=1e-6)
    assert outs[0] == outs[1] == outs[2]
    report = (tmp_path / "run1" / "report.md").read_text()
    assert "best offline label 1.27e+31 (in the label column's units)" in report


def test_replicates_are_merged_and_reported(tmp_path):
    labels = [0.1 * i for i in range(128)]
    path = write_labels(tmp_path / "rep.csv", labels)
    path.write_text(path.read_text() + "AAAACG,5.0\nAAAACG,7.0\n")
    out = tmp_path / "run"
    result = run(config(tmp_path, *CSV, f"task.path={path}"), out)
    assert result["replicates_merged"] == 2 and result["n_offline"] == 128
    assert "2 rows measured a sequence already in the file" in (out / "report.md").read_text()


@pytest.mark.parametrize("setting, problem", [
    ("n_designs=0", "n_designs must be an integer >= 1"),
    ("device=cuda", "no CUDA device"),
    ("finetune.alpha=-1", "finetune.alpha must be a finite number >= 0"),
    # Once refused only after pretraining and the reward model's fit, with a traceback:
    ("conservative.c=-1", "conservative: c must be a finite number >= 0, got -1"),
    ("conservative.c=abc", "conservative: c must be a finite number >= 0, got 'abc'"),
    ("conservative.penalty=foo", "conservative: unknown penalty 'foo'"),
    ("conservative.quantile=0", r"conservative: quantile must be in \(0, 0.5\)"),
    ("conservative.c=auto auto.designs=0", "auto.designs must be an integer >= 1"),
    ("conservative.c=auto auto.c_grid=[-1]", r"auto.c_grid and auto.alpha_grid must be non-empty \(c finite"),
    ("reward_model=conv_ensemble reward_model.kernel_size=4", "DeepEnsemble needs an odd kernel_size, got 4"),
    ("reward_model.hidden_dims=[]", "DeepEnsemble: hidden_dims must hold one layer width at least"),
    ("diffusion.denoiser.heads=0", "settings of diffusion do not build"),
    ("diffusion.schedule=foo", "settings of diffusion do not build .*unknown schedule 'foo'"),
    ("diffusion.min_prob=-1", r"settings of diffusion do not build \(min_prob must be in \[0, 1\), got -1"),
    ("include_offline=no", "include_offline must be true or false, got 'no'"),  # a string, so true
])
def test_impossible_settings_are_refused_before_any_training(tmp_path, setting, problem):
    with pytest.raises(ValueError, match=problem):
        run(config(tmp_path, *setting.split()), tmp_path / "run")
    assert not (tmp_path / "cache").exists()


# The auto probe's method SMC, all its settings given.
AUTO_SMC = ("conservative.c=auto auto.method._target_=mbo.guidance.smc ~auto.method.candidates "
            "+auto.method.particles=2 +auto.method.ess_threshold=0.5 +auto.method.resampling=systematic")


@pytest.mark.parametrize("setting, problem", [
    ("task=csv", "task.path must be given"), ("plate=100", "plate must be null or one of"),
    ("seed=abc", "seed must be an integer"), ("seed=-1", "seed must be an integer from 0 to 4294967295"),
    ("seed=99999999999999999999", "seed must be an integer from 0"),  # once a traceback from torch
    ("n_designs=2.5", "n_designs must be an integer"),
    ("mode=foo", "mode must be braid or ctrl"), ("progress=no", "progress must be auto, true or false"),
    ("threads=0", "threads must be auto or an integer >= 1"),
    ("target_samples=-1", "target_samples must be an integer >= 0"),
    ("diffusion.pretrain.lr=0", "diffusion.pretrain.lr must be a finite number > 0"),
    ("diffusion.denoiser.dropout=1.0",
     r"^TransformerDenoiser: diffusion.denoiser.dropout must lie in \[0, 1\), got 1.0$"),
    # The default warmup (100) outlasted a short run's steps, and the learning rate never peaked.
    ("diffusion.pretrain.warmup=11",
     "^diffusion.pretrain.warmup=11 is more than diffusion.pretrain.steps=10: the learning rate would never "
     "reach diffusion.pretrain.lr; lower diffusion.pretrain.warmup to 10 or less$"),
    ("finetune.iterations=-1", "finetune.iterations must be an integer >= 0"),
    ("finetune=backprop finetune.kl_budget=-1", "finetune.kl_budget must be null or a finite number > 0"),
    ("finetune=ppo finetune.alpha=0", "finetune_ppo: finetune.alpha must be a finite number > 0"),
    ("finetune=ppo finetune.epochs=0", "finetune.epochs must be an integer >= 1"),
    ("finetune.alpha=abc", "finetune.alpha must be a finite number >= 0"),
    ("method=svdd_pm method.candidates=0", "svdd_pm: method.candidates must be an integer >= 1"),
    ("method=svdd_rollout method.alpha=-1", "method.alpha must be a finite number >= 0"),
    ("method=svdd_rollout method.selections=0", "svdd_rollout: method.selections must be an integer >= 1"),
    ("method=smc method.alpha=0", "smc: method.alpha must be a finite number > 0"),
    ("method=smc method.resampling=stratified", "method.resampling must be one of systematic, multinomial"),
    ("method=refinement method.rounds=0", "method.rounds must be an integer >= 1"),
    ("method=refinement method.remask_fraction=0", r"method.remask_fraction must lie in \(0, 1\]"),
    ("method=gradient method.scale=-1", "method.scale must be a finite number >= 0"),
    ("method=svdd_mc method.value_dim=30", "method.value_dim must be a positive multiple of 4"),
    ("auto.method.candidates=0", "auto.method.candidates must be an integer >= 1"),
    # Each once refused only after pretraining and the reward model's fit, with a traceback:
    ("finetune=ppo finetune.alpha=auto auto.alpha_grid=[0]",
     r"auto.alpha_grid must hold only alphas > 0 for finetune \(finetune_ppo\)"),
    ("method=gradient method.alpha=auto auto.alpha_grid=[0,0.1]",
     r"alpha_grid must hold only alphas > 0 for method \(gradient_guidance\), which weigh"),
    ("conservative.c=auto auto.method._target_=mbo.guidance.smc ~auto.method.candidates",
     r"auto.method: smc needs particles, ess_threshold, resampling; give \+auto.method.particles=…"),
    ("conservative.c=auto auto.method._target_=mbo.guidance.best_of_n ~auto.method.candidates",
     "auto.method: best_of_n takes no alpha, and the auto probe runs it at each alpha"),
    (f"{AUTO_SMC} finetune.alpha=0", "auto.method: smc needs alpha > 0, and the auto probe runs it at "
                                     "finetune.alpha=0"),
    (f"{AUTO_SMC} auto.alpha_grid=[0,1] method=svdd_pm method.alpha=auto",
     r"only alphas > 0 for auto.method \(smc\), which"),
    ("+auto.method.alpha=0.5", "setting 'auto.method.alpha' is ignored: the run passes its own"),
    # An α chosen for a fine-tuner the method replaces: the probe would run for nothing.
    ("method=best_of_n finetune.alpha=auto", r"but method \(best_of_n\) designs .*\(best_of_n takes none\)"),
    ("method=svdd_pm finetune.alpha=auto", r"would use it \(method.alpha=auto chooses the method's\)"),
    ("diffusion/sampler=grid diffusion.sampler.steps=2.5", "diffusion.sampler.steps must be an integer >= 1"),
    ("mode=ctrl ctrl.finetune.iterations=-3", "ctrl.finetune.iterations must be an integer >= 0"),
    ("pareto.method=foo", "pareto.method must be one of qnehvi, qparego, random_scalarization"),
    ("mode=ctrl ctrl.factors.0.percentiles=[90,50]", r"ctrl.factors\[0\]: percentiles must increase"),
    ("mode=ctrl ctrl.factors.0.percentiles=[50,150]", r"percentiles must increase strictly within \(0, 100"),
    ("mode=ctrl ctrl.factors.0.classes=[low,high]", "name one class more than percentiles"),
    ("mode=ctrl constraints.fixed=TA...... plate=96", "mode=ctrl does not use constraints.fixed, plate=96"),
    ("mode=ctrl ctrl.conditions=['C=high']", "the factors and their classes are"),
    ("mode=ctrl ctrl.conditions=['A=huge']", "the factors and their classes are"),
    ("mode=ctrl ctrl.conditions=[]", "ctrl.conditions is empty"),
    ("mode=ctrl ctrl.gamma=-1", "ctrl.gamma be > 0"),
])
def test_settings_that_cannot_work_are_named_before_anything_is_read(tmp_path, setting, problem):
    with pytest.raises(SettingsError, match=problem):
        check_settings(config(tmp_path, *setting.split()))


def test_numbers_on_the_command_line_name_columns_and_letters(tmp_path):
    data = tmp_path / "digits.csv"
    data.write_text("seq,2024\n" + "".join(f"{s},{k}\n" for k, s in enumerate(["1234", "4321", "1324"])))
    task = instantiate(config(tmp_path, *CSV[:2], f"task.path={data}", "task.label_column=2024",
                              "task.alphabet=1234").task)
    assert task.label_columns == ["2024"] and task.alphabet.size == 4 and len(task.offline_dataset()) == 3
    one = instantiate(config(tmp_path, *CSV[:2], f"task.path={data}", "task.label_column=[2024]",
                             "task.alphabet=1234").task)
    assert one.offline_dataset().labels.dim() == 1  # a list of one column is that column


def test_too_few_labels_for_automatic_settings_are_refused_before_any_training(tmp_path):
    data = tmp_path / "two.csv"
    data.write_text("seq,kd\nACGT,1\nTTGA,2\n")
    with pytest.raises(SettingsError, match=r"^conservative.c=auto and finetune.alpha=auto fit .* give both"):
        run(config(tmp_path, *CSV, f"task.path={data}", "conservative.c=auto", "finetune.alpha=auto"),
            tmp_path / "run")
    with pytest.raises(SettingsError, match=r"^conservative.c=auto fits .* give it as a number \(e.g. "
                                            r"conservative.c=0\)"):
        run(config(tmp_path, *CSV, f"task.path={data}", "conservative.c=auto", "finetune.alpha=0.1"),
            tmp_path / "run")
    assert not (tmp_path / "cache").exists()
    run(config(tmp_path, *CSV, f"task.path={data}", "conservative.c=0", "finetune.alpha=0.03"),
        tmp_path / "run")  # two labels are enough with both given


@pytest.mark.parametrize("text, problem", [
    ("seq,kd\nACGT,2\nTTGA,2\n", "all 2 labels are equal"),
    ("seq,kd\nACGT,2\n", "at least 2 distinct labeled sequences"),
    ("seq,kd\nACGT,2\nTTGA,1e308\n", "row 3"),
])
def test_unlearnable_files_are_refused_before_any_training(tmp_path, text, problem):
    data = tmp_path / "bad.csv"
    data.write_text(text)
    with pytest.raises(DataError, match=problem):
        run(config(tmp_path, *CSV, f"task.path={data}"), tmp_path / "run")
    assert not (tmp_path / "cache").exists()


def test_more_designs_than_new_sequences_exist_are_refused_before_any_training(tmp_path):
    data = tmp_path / "short.csv"
    data.write_text("seq,kd\nA,1\nC,2\nG,3\n")  # length 1: one new DNA sequence, T
    with pytest.raises(SettingsError, match=r"n_designs=2, but only 4 sequences of length 1 over 4 letters "
                                            r"exist, 3 of them in the offline data: lower n_designs or set "
                                            r"include_offline=true"):
        run(config(tmp_path, *CSV, f"task.path={data}", "n_designs=2"), tmp_path / "run")
    with pytest.raises(SettingsError, match=r"n_designs=5, but only 4 sequences .* exist: lower n_designs$"):
        run(config(tmp_path, *CSV, f"task.path={data}", "n_designs=5", "include_offline=true"),
            tmp_path / "run")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("overrides, problem", [
    (["task.corpus_mutation_fraction=0.01"], "task AAVPackaging: could not draw 5000 distinct mutants"),
    (["task.minimum_fitness_multiplier=0"], "no mutant at distance 7 of the wild type scores above 0"),
    (["task.start_distances=[]"], "its offline data: need at least 2 distinct labeled sequences to fit a "
                                  "reward model, got 1"),
])
def test_task_settings_that_cannot_make_its_data_are_refused_before_any_training(tmp_path, overrides,
                                                                                  problem):
    # Found only as the task draws its data (the starts, the corpus), after it was built.
    with pytest.raises(SettingsError, match=re.escape(problem)):
        run(config(tmp_path, "task=aav", "conservative.c=0", *overrides), tmp_path / "run")
    assert not (tmp_path / "cache").exists()


def app(tmp_path, *args, out=None, cache=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "experiments.run", *args, f"hydra.run.dir={out or tmp_path / 'out'}",
           f"cache_dir={cache or tmp_path / 'cache'}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_user_errors_are_one_line_on_stderr_with_exit_status_2(tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("seq,kd\nACGT,1\nACXT,2\n")
    proc = app(tmp_path, *CSV, f"task.path={data}")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "bad.csv, row 3" in proc.stderr and "'X'" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = app(tmp_path, "device=cuda")
    assert proc.returncode == 2 and proc.stderr.startswith("mbo-run: error: device 'cuda'")
    # A command line Hydra cannot compose: one line, not Hydra's report of many (and exit status 1).
    for args, problem in ((["reward_model=gpp"], "Could not find 'reward_model/gpp'; Available options in "
                                                  "'reward_model': bootstrap, calibrated_ensemble,"),
                          (["conservative.cc=2"], "Could not override 'conservative.cc'."),
                          (["-m", "hydra/launcher=slurmm"], "Could not find 'hydra/launcher/slurmm'"),
                          (["n_designs=${nope}"], "settings: Interpolation key 'nope' not found"),
                          (["reward_model.num_members=x"], "settings of reward_model do not build"),
                          # Added keys nothing reads: once ignored in silence, or a traceback after training.
                          (["+n_design=8"], "unknown setting 'n_design' (known in the config:"),
                          (["+finetune.iteration=5"], "unknown setting 'finetune.iteration' (finetune_vidd"),
                          (["-m", "--cfg", "job", "seed=0,1"], "Only one of --run, --multirun, --cfg")):
        proc = app(tmp_path, *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith("mbo-run: error: ") and problem in proc.stderr, proc.stderr
    assert not (tmp_path / "cache").exists()  # refused before any training


def test_a_finished_run_is_never_rewritten(tmp_path):
    out = tmp_path / "out"
    (out / ".hydra").mkdir(parents=True)
    before = {"metrics.json": '{"seed": 0}', "designs.csv": "id,sequence\nd0,ACGT\n",
              ".hydra/config.yaml": "seed: 0\n"}
    for name, text in before.items():
        (out / name).write_text(text)
    data = tmp_path / "bad.csv"
    data.write_text("seq,kd\nACGT,1\nACXT,2\n")
    proc = app(tmp_path, *CSV, f"task.path={data}")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "already holds a finished run (metrics.json)" in proc.stderr
    assert {name: (out / name).read_text() for name in before} == before  # Hydra wrote nothing either
    assert sorted(p.name for p in out.rglob("*")) == [".hydra", "config.yaml", "designs.csv", "metrics.json"]


def test_a_failure_of_the_project_itself_shows_its_own_frames(tmp_path):
    # Any exception the project has no message for stands in for a bug: Hydra's frames are left out.
    code = ("import sys, experiments.run as app\n"
            "def run(cfg, out):\n    raise RuntimeError('a bug')\n"
            "app.run = run\n"
            f"sys.argv = ['mbo-run', 'hydra.run.dir={tmp_path / 'out'}', 'cache_dir={tmp_path / 'cache'}']\n"
            "app.main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"})
    assert proc.returncode == 1, proc.stderr
    assert "RuntimeError: a bug" in proc.stderr and "in hydra_app" in proc.stderr, proc.stderr
    assert "site-packages/hydra" not in proc.stderr and len(proc.stderr.splitlines()) < 15, proc.stderr


def test_help_describes_the_app(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert "mbo-run: offline dataset in, designs out" in proc.stdout
    groups = ("reward_model: bootstrap, calibrated_ensemble, conv_ensemble, conv_ensemble_dilated, ensemble, "
              "gp, variational_gp")
    assert groups in proc.stdout
    # A reader that leaves early (`mbo-run --help | less`, quit at once) is no error.
    command = f"set -o pipefail; {shlex.quote(sys.executable)} -m experiments.run --help | true"
    piped = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr


def test_a_redirected_run_writes_no_progress_bars(tmp_path):
    proc = app(tmp_path, *TINY[:-1], "progress=auto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr and "\r" not in proc.stdout


@pytest.mark.parametrize("method, setting", [("best_of_n", "method.num_samples=2"),
                                             ("svdd_pm", "method.candidates=2")])
def test_an_inference_time_method_replaces_fine_tuning(tmp_path, method, setting):
    out = tmp_path / "run"
    result = run(config(tmp_path, f"method={method}", setting, "n_designs=8"), out)
    assert method.split("_")[0] in next(k for k in result["methods"] if k != "pretrained")
    d = result["designs"]
    assert d["written"] == 8 and d["reward_calls"] > 0 and d["network_calls"] > 0
    assert "target" not in d and json.loads((out / "history.json").read_text()) == []


def test_fine_tuning_reports_its_gap_to_the_target(tmp_path):
    result = run(config(tmp_path), tmp_path / "run")
    gap = result["designs"]["target"]
    assert gap["gap"] == pytest.approx(gap["log_z"] - gap["objective"]) and gap["kl"] > 0
    skipped = run(config(tmp_path, "target_samples=0"), tmp_path / "skipped")  # long L: hours
    assert "target" not in skipped["designs"]


CONSTRAINED = ["constraints.fixed=TA......", "constraints.forbidden_motifs=[AATT]",
               "constraints.gc=[0.25,0.5]"]
# Every design method of mbo-run: the four fine-tuners and the seven inference-time methods.
METHODS = {"vidd": [], "backprop": ["finetune=backprop"], "ppo": ["finetune=ppo"], "rwr": ["finetune=rwr"],
           "best_of_n": ["method=best_of_n", "method.num_samples=2"],
           "svdd_pm": ["method=svdd_pm", "method.candidates=2"],
           "svdd_rollout": ["method=svdd_rollout", "method.candidates=2"],
           "svdd_mc": ["method=svdd_mc", "method.candidates=2", "method.rollouts=16", "method.value_steps=2",
                       "method.value_batch_size=8", "method.value_dim=8", "method.value_depth=1"],
           "smc": ["method=smc", "method.particles=2"], "gradient": ["method=gradient"],
           "refinement": ["method=refinement", "method.candidates=2", "method.rounds=1"]}


@pytest.mark.parametrize("method", list(METHODS.values()), ids=list(METHODS))
def test_constrained_runs_write_only_valid_designs(tmp_path, method):
    from mbo.constraints import Constraints
    from mbo.data.alphabet import DNA

    out = tmp_path / "run"
    result = run(config(tmp_path, *CONSTRAINED, *method), out)
    rows = read_rows(out / "designs.csv")
    c = Constraints(DNA, 8, fixed="TA......", forbidden_motifs=["AATT"], gc=[0.25, 0.5])
    assert len(rows) > 0 and bool(c.satisfied(DNA.encode_batch([r["sequence"] for r in rows])).all())
    assert "forbidden motifs ['AATT']" in result["designs"]["constraints"]


def test_designs_near_a_parent_are_drawn_near_it(tmp_path):
    from mbo.data.alphabet import DNA

    # Rejection alone found almost none: the samples are pulled within the distance.
    out = tmp_path / "run"
    run(config(tmp_path, "constraints.parent=ACGTACGT", "constraints.max_mutations=2", "method=best_of_n",
               "method.num_samples=1"), out)
    rows = read_rows(out / "designs.csv")
    parent = DNA.encode("ACGTACGT")
    assert len(rows) > 8 and all(int((DNA.encode(r["sequence"]) != parent).sum()) <= 2 for r in rows)


def test_fixed_letters_hold_where_min_p_would_cut_them(tmp_path):
    # min-p 0.5 keeps about one letter a position; the rules come first, so it keeps the fixed one.
    result = run(config(tmp_path, "constraints.fixed=TATATATA", "diffusion.min_prob=0.5", "method=best_of_n",
                        "method.num_samples=1", "include_offline=true"), tmp_path / "run")
    assert result["methods"]["pretrained"]["diversity"] == 0.0  # every prior draw is TATATATA


def test_impossible_constraints_stop_before_training(tmp_path):
    from mbo.constraints import ConstraintError

    with pytest.raises(ConstraintError, match="cannot be met"):
        run(config(tmp_path, "constraints.fixed=GGGGGGGG", "constraints.gc=[0,0.5]"), tmp_path / "run")
    assert not (tmp_path / "cache").exists()


def test_a_parent_that_may_not_mutate_and_is_measured_stops_before_training(tmp_path):
    # Once refused only after pretraining and fine-tuning: every design drawn was the parent.
    cfg = config(tmp_path, "constraints.max_mutations=0")
    parent = instantiate(cfg.task).offline_dataset().sequences()[0]
    cfg.constraints.parent = parent
    with pytest.raises(SettingsError, match=rf"^constraints.max_mutations=0 leaves the parent {parent} as "
                                            "the only design, and it is in the offline data: set "
                                            r"include_offline=true or constraints.max_mutations >= 1$"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "cache").exists()


def test_every_design_carries_its_provenance_and_a_plate_map(tmp_path):
    from mbo.checkpoint import weights_sha256

    out = tmp_path / "run"
    result = run(config(tmp_path, "plate=96"), out)
    rows = read_rows(out / "designs.csv")
    p = result["provenance"]
    assert rows[0]["model_sha256"] == weights_sha256(out / "finetuned.safetensors") == p["model_sha256"]
    (cached,) = (tmp_path / "cache").glob("*.safetensors")
    assert rows[-1]["pretrained_sha256"] == weights_sha256(cached)
    assert rows[0]["method"] == "finetuned" and rows[0]["seed"] == "0" and len(rows[0]["config_sha256"]) == 64
    plate = read_rows(out / "plate_map.csv")
    assert [r["well"] for r in plate[:13]][-1] == "B1" and plate[0]["id"] == rows[0]["id"]
    assert "Provenance" in (out / "report.md").read_text()
    # Where the cache lives and whether bars are drawn change no result, so not the config's hash.
    task = instantiate(config(tmp_path).task)
    hashes = [provenance(config(tmp_path, "plate=96", *more), out, task, "finetuned")["config_sha256"]
              for more in ([], ["progress=true"], [f"cache_dir={tmp_path / 'cache' / '.'}"], ["seed=1"])]
    assert hashes == [p["config_sha256"]] * 3 + [hashes[-1]] and hashes[-1] != p["config_sha256"]
    # A task's own cache follows the run's (${cache_dir}): it is left out with it, and still resolves.
    folding = [settings_sha256(compose_config("config", ["task=inverse_folding", f"cache_dir={where}"]))
               for where in (tmp_path, tmp_path / "elsewhere")]
    assert folding[0] == folding[1]


def test_automatic_c_and_alpha_are_chosen_from_the_offline_data(tmp_path):
    result = run(config(tmp_path, "conservative.c=auto", "finetune.alpha=auto", "auto.c_grid=[0,5]",
                        "auto.alpha_grid=[0.05,1]", "auto.designs=8", "auto.method.candidates=2"),
                 tmp_path / "run")
    chosen = result["auto"]
    assert chosen["c"] in (0.0, 5.0) and chosen["alpha"] in (0.05, 1.0)
    assert set(chosen["trials"]) == {"c=0,alpha=0.05", "c=0,alpha=1", "c=5,alpha=0.05", "c=5,alpha=1"}
    assert all(t["designs"] > 0 for t in chosen["trials"].values())


def test_an_inference_time_methods_alpha_is_chosen_as_the_fine_tuners_is(tmp_path):
    # method.alpha=auto was searched, then the method ran with the string "auto" and failed.
    result = run(config(tmp_path, "method=svdd_pm", "method.alpha=auto", "method.candidates=2",
                        "auto.alpha_grid=[0.05,1]", "auto.designs=8", "auto.method.candidates=2"),
                 tmp_path / "run")
    assert result["auto"]["alpha"] in (0.05, 1.0) and set(result["auto"]["trials"]) == {"c=0,alpha=0.05",
                                                                                        "c=0,alpha=1"}


def test_a_number_holds_the_setting_that_auto_would_choose(tmp_path):
    result = run(config(tmp_path, "conservative.c=auto", "finetune.alpha=0.2", "auto.c_grid=[0,5]",
                        "auto.designs=8", "auto.method.candidates=2"), tmp_path / "run")
    assert result["auto"]["alpha"] == 0.2
    assert set(result["auto"]["trials"]) == {"c=0,alpha=0.2", "c=5,alpha=0.2"}
    with pytest.raises(SettingsError, match=r"finetune\.alpha must be a finite number >= 0, got .fast. \(or"):
        run(config(tmp_path, "finetune.alpha=fast"), tmp_path / "run2")
    with pytest.raises(SettingsError, match=r"auto\.alpha_grid"):
        run(config(tmp_path, "finetune.alpha=auto", "auto.alpha_grid=[]"), tmp_path / "run3")


def test_two_label_columns_design_for_the_pareto_front(tmp_path):
    # kd rewards G, expression rewards T: a trade-off; the plate is chosen by qNEHVI.
    rows = ["seq,kd,expression"] + [
        f"{s},{s.count('G') + 0.01 * i:.2f},{s.count('T') - 0.01 * i:.2f}"
        for i, s in enumerate(a + b + c + d + "CA" for a in "ACGT" for b in "ACGT" for c in "ACGT"
                              for d in "AC")]
    data = tmp_path / "two.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    result = run(config(tmp_path, "task=csv", f"task.path={data}", "task.sequence_column=seq",
                        "task.label_column=[kd,expression]", "conservative.c=0", "plate=96"), out)
    assert result["objectives"] == ["kd", "expression"] and result["designs"]["selection"] == "qnehvi"
    assert result["auto"] is None  # c and α given: nothing chosen from the offline data
    wells = read_rows(out / "plate_map.csv")
    assert list(wells[0])[4:] == ["predicted_mean_kd", "predicted_std_kd", "predicted_mean_expression",
                                  "predicted_std_expression"] and len(wells) == 16
    designs = read_rows(out / "designs.csv")
    assert len(designs) == 16 and len({r["sequence"] for r in designs}) == 16
    assert {"pred_mean_kd", "pred_std_kd", "pred_mean_expression", "acquisition",
            "on_predicted_front", "config_sha256"} <= designs[0].keys()
    assert not {r["sequence"] for r in designs} & {r.split(",")[0] for r in rows[1:]}
    assert (out / "pareto.png").is_file() and "Pareto front" in (out / "report.md").read_text()
    with pytest.raises(DataError, match=r"expression.*all 128 labels are equal"):
        data.write_text("\n".join(r.rsplit(",", 1)[0] + (",1" if i else ",expression")
                                  for i, r in enumerate(rows)) + "\n")
        run(config(tmp_path, "task=csv", f"task.path={data}", "task.sequence_column=seq",
                   "task.label_column=[kd,expression]"), tmp_path / "run2")
    # c=auto (the default) fits a probe per objective: one piled at its floor is refused before training.
    data.write_text("\n".join(r.rsplit(",", 1)[0] + (f",{int(i > 120)}" if i else ",expression")
                              for i, r in enumerate(rows)) + "\n")
    with pytest.raises(SettingsError, match=r"labels of 'expression' below the top 20%.* leaves 1 distinct"):
        run(config(tmp_path, "task=csv", f"task.path={data}", "task.sequence_column=seq",
                   "task.label_column=[kd,expression]", "conservative.c=auto"), tmp_path / "run4")
    # The plate's hypervolume needs ensemble members: another model is refused before pretraining.
    data.write_text("\n".join(rows) + "\n")
    for model in ("gp", "calibrated_ensemble"):
        with pytest.raises(SettingsError, match=r"several objectives \(kd, expression\) need an ensemble"):
            run(compose_config("config", ["task=csv", f"task.path={data}", "task.sequence_column=seq",
                                          "task.label_column=[kd,expression]", f"reward_model={model}",
                                          f"cache_dir={tmp_path / 'cache3'}"]), tmp_path / "run3")
    assert not (tmp_path / "cache3").exists()


def _fine_tuned_off_support(pretrained, reward, *, alpha, seed, progress):
    """A stand-in fine-tuner whose model draws every token, the prior's cut ones included."""
    import copy

    model = copy.deepcopy(pretrained)
    model.policy = None
    return model, []


def test_fine_tuned_designs_are_drawn_on_the_priors_support(tmp_path):
    import torch
    from omegaconf import OmegaConf

    from experiments.run import designer
    from mbo.diffusion import MaskedDiffusion, TransformerDenoiser
    from mbo.diffusion.policy import restrict

    torch.manual_seed(0)
    prior = MaskedDiffusion(TransformerDenoiser(4, 6, dim=16, depth=1, heads=2), 4, 6)
    prior.policy = lambda lp: restrict(lp, torch.tensor([False, True, True, True]))  # token 0 is cut
    cfg = OmegaConf.create({"seed": 0, "finetune": {
        "_target_": f"{__name__}._fine_tuned_off_support", "_partial_": True, "alpha": 0}})
    draw, model, *_ = designer(cfg, prior, None, torch.Generator().manual_seed(0), prior.device, False)
    # The stand-in draws token 0 unless sampling keeps to the prior's support.
    assert bool((model.sample(200, generator=torch.Generator().manual_seed(1)) == 0).any())
    assert not bool((draw(200) == 0).any())


def test_a_folder_with_a_users_files_is_never_written_into(tmp_path):
    data = tmp_path / "round2" / "designs.csv"  # last round's designs, now measured: the input
    data.parent.mkdir()
    data.write_text("seq,kd\n" + "".join(f"{s},{k}\n" for k, s in enumerate(["ACGT", "TTGA", "GACA"])))
    before = data.read_text()
    proc = app(tmp_path, *CSV, f"task.path={data}", out=data.parent)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "already holds designs.csv, which this run would overwrite" in proc.stderr
    assert data.read_text() == before and sorted(p.name for p in data.parent.iterdir()) == ["designs.csv"]
    proc = app(tmp_path, *CSV, f"task.path={data}", out=data)
    assert proc.returncode == 2 and "is a file; hydra.run.dir" in proc.stderr


def test_labels_far_from_zero_in_a_narrow_range_get_their_report(tmp_path):
    base = [0.1 * i for i in range(128)]
    path = write_labels(tmp_path / "offset.csv", [1_000_000 + y / 100 for y in base])
    out = tmp_path / "run"
    run(config(tmp_path, *CSV, f"task.path={path}"), out)
    assert (out / "report.md").is_file() and (out / "rewards.png").is_file()


def test_a_cache_folder_that_cannot_be_written_is_one_line(tmp_path):
    data = write_labels(tmp_path / "d.csv", [0.1 * i for i in range(16)])
    (tmp_path / "afile").write_text("")
    proc = app(tmp_path, *CSV, f"task.path={data}", cache=tmp_path / "afile" / "cache")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "cannot be written (Not a directory); set cache_dir=" in proc.stderr


@pytest.mark.parametrize("args, setting", [
    (["finetune.batch_size=1000000000000"], "finetune.batch_size"),
    (["mode=ctrl", "ctrl.finetune.batch_size=1000000000000"], "ctrl.finetune.batch_size"),
])
def test_fine_tuning_that_cannot_fit_in_memory_is_refused_before_any_training(tmp_path, args, setting):
    # It was killed by the kernel with no message, after pretraining.
    proc = app(tmp_path, *args)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert re.search(rf"fine-tuning on sequences of length 8 needs about .* lower {setting} to \d+ or less",
                     proc.stderr), proc.stderr
    assert not (tmp_path / "cache").exists()


def test_running_out_of_memory_is_told_apart_from_other_failures():
    from experiments.run import out_of_memory

    assert out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:127] . DefaultCPUAllocator: can't "
                                      "allocate memory: you tried to allocate 8192000000 bytes."))
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_two_runs_never_write_into_one_folder(tmp_path):
    from filelock import FileLock

    data = write_labels(tmp_path / "d.csv", [0.1 * i for i in range(16)])
    out = tmp_path / "out"
    out.mkdir()
    with FileLock(out / ".mbo-run.lock"):  # as a run started in the same second holds it
        proc = app(tmp_path, *CSV, f"task.path={data}", "n_designs=0")
    assert proc.returncode == 2 and "another mbo-run is writing into" in proc.stderr
    proc = app(tmp_path, *CSV, f"task.path={data}", "n_designs=0")  # the lock's file alone is no obstacle
    assert proc.returncode == 2 and "n_designs must be an integer >= 1" in proc.stderr


def test_the_summary_table_shows_values_in_any_label_unit():
    from experiments.report import summary_table

    row = {"pred_mean": 3.2e-9, "true_p50": 0.898, "novelty": 0.0}
    table = summary_table({"methods": {"finetuned": row}})
    assert "| finetuned | 0.898 | 3.2e-09 | 0.000 |" in table  # 3.2e-9 M was 0.000


def test_a_group_set_to_a_name_in_a_saved_config_is_refused(tmp_path):
    # A saved config (-cp RUN/.hydra -cn config) has no groups: `reward_model=gp` makes the node a string.
    from omegaconf import open_dict

    cfg = config(tmp_path)
    with open_dict(cfg):
        cfg.reward_model = "gp"
    with pytest.raises(SettingsError, match=r"^reward_model is 'gp', not a group's settings; a saved config"):
        check_settings(cfg)


# Below the median of [0] * 14 + [0.5] * 2 + [1] * 8 + [2..9], two distinct labels; below the median of
# its lower 80 % (the auto probe's rows), one.
PROBE_SPLIT_FAILS = [0.0] * 14 + [0.5] * 2 + [1.0] * 8 + [float(v) for v in range(2, 10)]


@pytest.mark.parametrize("labels, auto, fitted_on", [
    ([1.0] * 2 + [0.0] * 30, "conservative.c=0", "the offline labels"),  # one distinct label below the top
    (PROBE_SPLIT_FAILS, "conservative.c=auto", "the auto probe's labels"),
])
def test_a_calibrated_model_with_nothing_to_calibrate_on_is_refused_before_any_training(tmp_path, labels,
                                                                                        auto, fitted_on):
    data = write_labels(tmp_path / "d.csv", labels)
    tiny = [o for o in TINY if not o.startswith("reward_model.")]
    cfg = compose_config("config", [*tiny, f"cache_dir={tmp_path / 'cache'}", *CSV, f"task.path={data}",
                                    "reward_model=calibrated_ensemble", auto])
    with pytest.raises(SettingsError, match=f"reward_model on {fitted_on}: ExtrapolationCalibrated: holding"):
        run(cfg, tmp_path / "r")
    assert not (tmp_path / "cache").exists()


def test_an_inference_time_method_that_repeats_its_designs_is_drawn_three_times_at_most():
    import torch
    from omegaconf import OmegaConf

    from experiments.run import draw_candidates
    from mbo.constraints import Constraints
    from mbo.data.alphabet import DNA

    calls = []

    def draw(k):  # a method collapsed onto one design: each call pays its whole budget again
        calls.append(k)
        return torch.zeros(k, 4, dtype=torch.long)

    offline = type("Offline", (), {"tokens": torch.ones(2, 4, dtype=torch.long)})()
    cfg = {"seed": 0, "oversample": 2, "include_offline": False}
    found, drawn, _ = draw_candidates(OmegaConf.create({**cfg, "method": {"_target_": "x"}}), draw, 8,
                                      offline, Constraints(DNA, 4))
    assert len(found) == 1 and calls == [16, 16, 16] and drawn == 48
    calls.clear()  # a fine-tuned model's samples are cheap, but 3 draws in a row that add nothing end it
    draw_candidates(OmegaConf.create({**cfg, "method": None}), draw, 8, offline, Constraints(DNA, 4))
    assert len(calls) == 4
