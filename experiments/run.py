"""``mbo-run``: pretrain (or load cached) → fit reward model → conservative fine-tuning → designs.

Writes into Hydra's output directory: ``designs.csv``, ``metrics.json``, ``history.json``,
``report.md`` with PNG plots, and the resolved config (Hydra's ``.hydra/``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import hydra
import torch
from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf

from experiments.report import print_summary, write_report
from mbo.atomic import atomic_write_text
from mbo.checkpoint import CheckpointError, save_checkpoint
from mbo.data.io import DataError, write_csv
from mbo.device import resolve_device
from mbo.diffusion import MaskedDiffusion, pretrain
from mbo.diffusion.checkpoint import load_masked_diffusion
from mbo.evaluate import evaluate_designs, per_design

log = logging.getLogger("mbo-run")


def pretrained_diffusion(cfg: DictConfig, task, device: torch.device) -> MaskedDiffusion:
    """The pretrained model for this task and diffusion config, from the cache or trained now.

    The cache key hashes the task and diffusion configs (not the run seed), so every run of a sweep
    over seeds and fine-tuning settings shares one pretrained model. Jobs of a parallel sweep take a
    lock on the cache entry: the first trains and writes it, the others wait and then load it, so a
    sweep pretrains once. The lock is an OS file lock (``flock``), released if its holder dies, so a
    killed job never leaves the others waiting forever.
    """
    spec = {"task": OmegaConf.to_container(cfg.task, resolve=True),
            "diffusion": OmegaConf.to_container(cfg.diffusion, resolve=True)}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(to_absolute_path(cfg.cache_dir)) / f"pretrained-{task.name}-{key}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.with_name(path.name + ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another job to finish pretraining %s", path)
        lock.acquire()
    try:
        if path.exists():
            try:
                model = load_masked_diffusion(path).to(device)
                log.info("loading cached pretrained model %s", path)
                return model
            except CheckpointError as err:  # a stale or broken cache entry is ours to rebuild
                log.warning("cached model unusable, pretraining again: %s", err)
        log.info("pretraining; will cache the model at %s", path)
        denoiser = instantiate(cfg.diffusion.denoiser, vocab_size=task.alphabet.size, length=task.length)
        diffusion = MaskedDiffusion(denoiser, task.alphabet.size, task.length).to(device)
        p = cfg.diffusion.pretrain
        pretrain(diffusion, task.pretrain_corpus(), steps=p.steps, batch_size=p.batch_size, lr=p.lr,
                 seed=p.seed, device=device, progress=cfg.progress)
        # We hold the lock, so replacing is safe; only a stale entry can be there.
        save_checkpoint(path, diffusion, {**diffusion.config, "spec": spec}, overwrite=True)
        return diffusion
    finally:
        lock.release()


def kl_weight(alpha: float, offline) -> float:
    """The KL weight in reward units for a scale-free ``alpha``.

    ``alpha`` is given in units of the offline labels' standard deviation, so one default works for
    labels in any units (normalized scores, nM, log-fold change): α_eff = alpha · std(y_offline).
    """
    return float(alpha) * float(offline.labels.std())


def run(cfg: DictConfig, output_dir: Path) -> dict:
    """The whole pipeline for one config; returns the metrics written to ``metrics.json``."""
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # Called through a partial so a bad input file raises our DataError, not Hydra's wrapper.
    task = instantiate(cfg.task, _partial_=True)()
    offline = task.offline_dataset()
    log.info("task %s: %d offline sequences of length %d", task.name, len(offline), task.length)

    pretrained = pretrained_diffusion(cfg, task, device)
    timings["pretrain_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    reward_model = instantiate(cfg.reward_model, device=str(device)).fit(offline, seed=cfg.seed)
    reward = instantiate(cfg.conservative)(reward_model)
    timings["reward_model_s"] = time.perf_counter() - t

    t = time.perf_counter()
    finetune = instantiate(cfg.finetune)
    model, history = finetune(pretrained, reward, alpha=kl_weight(cfg.finetune.alpha, offline),
                              seed=cfg.seed, progress=cfg.progress)
    timings["finetune_s"] = time.perf_counter() - t

    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    steps = cfg.diffusion.sampling_steps
    designs = {
        "pretrained": pretrained.sample(cfg.n_designs, steps=steps, generator=gen).cpu(),
        "finetuned": model.sample(cfg.n_designs, steps=steps, generator=gen).cpu(),
    }
    metrics = {
        name: evaluate_designs(x, task=task, reward_model=reward_model, reward=reward,
                               offline=offline, diffusion=pretrained)
        for name, x in designs.items()
    }
    timings["total_s"] = time.perf_counter() - t0
    result = {"task": task.name, "seed": cfg.seed, "best_offline": task.best_offline,
              "methods": metrics, "timings": timings}

    cols = per_design(designs["finetuned"], task=task, reward_model=reward_model, reward=reward)
    write_csv(output_dir / "designs.csv",
              type(offline)(designs["finetuned"], task.alphabet), extra_columns=cols, overwrite=True)
    atomic_write_text(output_dir / "metrics.json", json.dumps(result, indent=2), overwrite=True)
    atomic_write_text(output_dir / "history.json", json.dumps(history), overwrite=True)
    write_report(output_dir, result, designs, task, reward_model, reward, history)
    print_summary(result)
    return result


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.mode == "ctrl":
            from experiments.ctrl_run import run_ctrl

            run_ctrl(cfg, output_dir)
        else:
            run(cfg, output_dir)
    except DataError as err:  # the user's file is wrong: say where, without a traceback
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # let the launcher mark this job failed and go on with the others
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
