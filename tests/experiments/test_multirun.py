"""Sweeps of ``mbo-run``: Hydra multirun through joblib and submitit_local, the shared pretrained-model
cache, and reproducibility of a run from its config and seed. Tiny configs: seconds per job."""

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

import experiments.run as app
from experiments.summarize import load_sweep
from mbo.config import compose_config

TINY = [
    "diffusion.denoiser.dim=16", "diffusion.denoiser.depth=1", "diffusion.denoiser.heads=2",
    "diffusion.pretrain.steps=4", "diffusion.pretrain.batch_size=16",
    # A warmup past the last step is refused; at this lr each step keeps the rate the default warmup
    # (100 steps to 2e-3) gave it.
    "diffusion.pretrain.warmup=4", "diffusion.pretrain.lr=8e-5",
    "reward_model.num_members=2", "reward_model.epochs=1", "reward_model.hidden_dims=[8]",
    "reward_model.min_steps=0", "oversample=8",
    "finetune.iterations=2", "finetune.batch_size=8", "n_designs=8",
    "progress=false",
]


def mbo_multirun(tmp_path, sweep_dir, cache_dir, *overrides):
    """``mbo-run -m`` in a subprocess, with every output under ``tmp_path``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    env.pop("MBO_CACHE_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "-m", *TINY, f"cache_dir={cache_dir}",
         f"hydra.sweep.dir={sweep_dir}", *overrides],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def check_sweep(sweep_dir, seeds):
    jobs, swept = load_sweep(sweep_dir)
    assert [j.num for j in jobs] == list(range(len(seeds)))
    assert [j.status for j in jobs] == ["ok"] * len(seeds)
    assert swept == []  # only the seed was swept, and results are averaged over it
    for job, seed in zip(jobs, seeds, strict=True):
        saved = OmegaConf.load(job.dir / ".hydra" / "config.yaml")  # the resolved config of the job
        assert saved.seed == seed and job.result["seed"] == seed
        assert (job.dir / "designs.csv").is_file()
        assert set(job.result["methods"]) == {"pretrained", "finetuned"}
    return jobs


def test_joblib_multirun_pretrains_once(tmp_path):
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    mbo_multirun(tmp_path, sweep, cache, "hydra/launcher=local", "hydra.launcher.n_jobs=2", "seed=0,1")
    jobs = check_sweep(sweep, [0, 1])
    logs = "".join(p.read_text() for j in jobs for p in j.dir.glob("*.log"))
    # Both jobs ran at once on one cache entry: one pretrained and wrote it, the other loaded it.
    assert logs.count("pretraining; will cache") == 1
    assert logs.count("loading cached pretrained model") == 1
    assert len(list(cache.glob("*.safetensors"))) == 1
    assert not list(tmp_path.glob("outputs")) and not list(tmp_path.glob("multirun"))
    # Re-run from its saved config, which holds none of mbo/conf's hydra callbacks: a finished job's
    # folder is refused all the same.
    before = (jobs[0].dir / "designs.csv").read_bytes()
    rerun = subprocess.run([sys.executable, "-m", "experiments.run", "-cp", str(jobs[0].dir / ".hydra"),
                            "-cn", "config", f"hydra.run.dir={jobs[0].dir}"],
                           cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                           text=True, timeout=240)
    assert rerun.returncode == 2 and "already holds a finished run" in rerun.stderr, rerun.stderr[-2000:]
    assert (jobs[0].dir / "designs.csv").read_bytes() == before
    # and a sweep of it is checked job by job before any starts.
    resweep = subprocess.run([sys.executable, "-m", "experiments.run", "-cp", str(jobs[0].dir / ".hydra"),
                              "-cn", "config", "-m", "finetune.alpha=0.1,-1",
                              f"hydra.sweep.dir={tmp_path / 're'}"],
                             cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                             text=True, timeout=240)
    assert resweep.returncode == 2 and "job 1 (finetune.alpha=-1)" in resweep.stderr, resweep.stderr[-2000:]
    assert not (tmp_path / "re").exists()


def test_submitit_local_multirun(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep, cache = tmp_path / "sweep", tmp_path / "cache"
    mbo_multirun(tmp_path, sweep, cache, "hydra/launcher=slurm_local", "seed=0,1")
    check_sweep(sweep, [0, 1])
    assert (sweep / ".submitit").is_dir()  # submitit's own per-job logs, where tracebacks land
    assert len(list(cache.glob("*.safetensors"))) == 1


def tiny_config(cache_dir, *overrides):
    return compose_config("config", [*TINY, f"cache_dir={cache_dir}", *overrides])


def test_same_config_and_seed_gives_identical_designs(tmp_path):
    cfg = tiny_config(tmp_path / "cache", "seed=3")
    # Cold cache (pretrains), then warm cache (loads): the designs must not depend on which.
    first = app.run(cfg, tmp_path / "a")
    second = app.run(cfg, tmp_path / "b")
    assert without_run_id(tmp_path / "a") == without_run_id(tmp_path / "b")  # every byte but the run's name
    assert first["methods"] == second["methods"]
    other = app.run(tiny_config(tmp_path / "cache", "seed=4"), tmp_path / "c")
    assert without_run_id(tmp_path / "c") != without_run_id(tmp_path / "a")
    assert other["seed"] == 4


def without_run_id(run_dir) -> list[str]:
    """designs.csv's lines with the run_id column (the run directory's name) taken out."""
    lines = (run_dir / "designs.csv").read_text().splitlines()
    col = lines[0].split(",").index("run_id")
    return [",".join(f for i, f in enumerate(line.split(",")) if i != col) for line in lines]


def test_a_failed_job_says_why_in_its_own_log_and_a_finished_sweep_is_kept(tmp_path):
    sweep = tmp_path / "sweep"
    (tmp_path / "a_file").write_text("")  # a cache under a file: each job fails as it starts pretraining
    cmd = [sys.executable, "-m", "experiments.run", "-m", "task=ehrlich", "seed=0,1",
           f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'a_file' / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    failed = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    # the sweep ends with the job's own words, not a traceback through Hydra's sweeper
    assert "Traceback" not in failed.stderr, failed.stderr
    # Hydra names the first failed job's overrides, then its reason in one line
    assert failed.stderr.count("\n") == 2 and failed.stderr.startswith("Error executing job with overrides: ")
    assert "mbo-run: error: " in failed.stderr and "Not a directory" in failed.stderr
    jobs, _ = load_sweep(sweep)
    assert [j.status for j in jobs] == ["failed", "failed"]
    assert all("Not a directory" in j.error for j in jobs)
    (sweep / "0" / "metrics.json").write_text("{}")  # as if job 0 had finished
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "already holds a finished run (0/metrics.json)" in proc.stderr


@pytest.mark.parametrize("sweep_overrides, job, problem", [
    (["finetune.alpha=0.1,-1", "seed=0,1"], "job 2 (finetune.alpha=-1 seed=0 ",
     "finetune_vidd: finetune.alpha must be a finite number >= 0, got -1 (or auto)"),
    (["task=ehrlich", "task.num_motifs=2,0"], "job 1 (task=ehrlich task.num_motifs=0 ",
     "task.num_motifs must be a positive integer"),
    (["task=csv", "task.path=good.csv,bad.csv"], "job 1 (task=csv task.path=bad.csv ",
     "bad.csv, row 3, column 'sequence': letter 'X'"),
    (["reward_model=glob(*)", "n_designs=0"], "job 0 (reward_model=bootstrap n_designs=0 ",
     "n_designs must be an integer >= 1"),
    (["task=aav", "task.corpus_mutation_fraction=0.2,0.01"],
     "job 1 (task=aav task.corpus_mutation_fraction=0.01 ", "task AAVPackaging: could not draw 5000"),
    # With chdir a relative path is the job folder's: the data are left to the jobs, the settings not.
    (["hydra.job.chdir=true", "task=csv", "finetune.alpha=0.1,-1", "task.path=good.csv,bad.csv"],
     "job 2 (task=csv finetune.alpha=-1 task.path=good.csv ", "finetune.alpha must be a finite number >= 0"),
    (["mode=ctrl", "ctrl.model_path=null,nothere.safetensors"], "job 1 (mode=ctrl ctrl.model_path=nothere",
     "nothere.safetensors does not exist"),
    (["mode=ctrl", "ctrl.factors.0.landscape=null", "ctrl.factors.0.csv=good.csv,missing.csv"],
     "job 0 (mode=ctrl ctrl.factors.0.landscape=null ctrl.factors.0.csv=good.csv ", "good.csv"),
    (["mode=ctrl", "n_designs=8,65537"], "job 1 (mode=ctrl n_designs=65537 ",
     "n_designs=65,537, but only 65,536 sequences of length 8 over 4 letters exist: lower n_designs"),
])
def test_a_sweep_with_a_bad_job_is_refused_before_any_job_starts(tmp_path, sweep_overrides, job, problem):
    (tmp_path / "good.csv").write_text("sequence,label\nACGT,1\nACGA,2\nAGGA,3\n")
    (tmp_path / "bad.csv").write_text("sequence,label\nACGT,1\nACXA,2\nAGGA,3\n")
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "experiments.run", "-m", *sweep_overrides,
           f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"mbo-run: error: {job}") and line.endswith("; no job was started"), line
    assert problem in line, line
    assert not sweep.exists() and not (tmp_path / "cache").exists()
