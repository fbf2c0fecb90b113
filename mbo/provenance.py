"""What made a run's designs, recorded on every row of its design files and in ``metrics.json``."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from mbo.checkpoint import weights_sha256
from mbo.diffusion.cache import cache_path


def provenance(cfg: DictConfig, output_dir: Path, task, method: str, model: Path | None = None) -> dict:
    """The run (its folder), method, seed, command, and the sha256 of the settings and of the weights
    of the prior and of the tuned model (:func:`~mbo.checkpoint.weights_sha256`).

    Args:
        cfg: the run's whole ``mbo-run`` config; ``task``: the task it built.
        output_dir: the run's folder; ``method``: the name the designs were made by.
        model: the tuned checkpoint the designs were drawn from (default: ``finetuned.safetensors`` in
            ``output_dir``); none for an inference-time method, which tunes nothing.
    """
    pretrained = cache_path(task.pretrain_corpus(), task.alphabet.size, cfg.diffusion,
                            to_absolute_path(cfg.cache_dir), task.name)
    tuned = output_dir / "finetuned.safetensors" if model is None else model
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    return {"run_id": f"{output_dir.parent.name}/{output_dir.name}", "method": method, "seed": int(cfg.seed),
            "config_sha256": settings_sha256(cfg),
            "pretrained_sha256": weights_sha256(pretrained),
            "model_sha256": weights_sha256(tuned) if tuned.exists() else "none (inference-time method)",
            "command": shlex.join(["mbo-run", *overrides])}  # quoted as a shell needs it


def settings_sha256(cfg: DictConfig) -> str:
    """The sha256 of the resolved settings, less those that change no result: where caches live
    (``cache_dir``, and a task's own, which follows it) and whether bars are drawn. Two runs that
    differ only there share it; the prior itself is ``pretrained_sha256``."""
    settings = OmegaConf.to_container(cfg, resolve=True)  # first: a task's cache_dir is ${cache_dir}
    settings.pop("progress", None)
    for node in (settings, settings.get("task") or {}):
        node.pop("cache_dir", None)
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(settings), sort_keys=True).encode()).hexdigest()
