"""The pretrained model of a corpus and recipe, trained once and then loaded from a cache directory.

Every caller (``mbo-run``, a campaign's ``init``, the benchmarks) that asks for the same corpus and the
same ``diffusion`` settings gets the same checkpoint. The key hashes the corpus tokens and the settings
that shape training (the sampler and ``min_prob`` are left out: they only decide how the trained model
is sampled), so a sweep over seeds and fine-tuning settings pretrains once. Parallel jobs take a file
lock on the entry: the first trains and writes it, the others wait and then load it; the lock is an OS
lock released if its holder dies, so a killed job never leaves the others waiting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from mbo.checkpoint import CheckpointError, read_config, save_checkpoint
from mbo.diffusion.denoiser import ConditionalDenoiser
from mbo.diffusion.masked import MaskedDiffusion
from mbo.diffusion.pretrain import (
    build_diffusion,
    check_corpus,
    check_training_memory,
    load_diffusion,
    pretrain,
)

log = logging.getLogger(__name__)


def training_spec(settings: Mapping) -> dict:
    """The ``diffusion`` settings that make a pretrained model (not how it samples), as plain data."""
    spec = _plain(settings)
    for how_to_sample in ("sampler", "min_prob"):
        spec.pop(how_to_sample, None)
    return spec


def cache_key(corpus: Tensor, vocab_size: int, settings: Mapping) -> str:
    """16 hex digits identifying a pretrained model: corpus tokens, vocabulary and training settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"vocab_size": vocab_size, "shape": list(corpus.shape),
                         "diffusion": training_spec(settings)}, sort_keys=True).encode())
    h.update(corpus.to(torch.int64).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_path(corpus: Tensor, vocab_size: int, settings: Mapping, cache_dir: str | os.PathLike,
               name: str = "model") -> Path:
    """Where :func:`pretrained_diffusion` keeps this model. Its checkpoint's config has ``trained``:
    the wall time, final training loss, device and threads of the run that trained it."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return Path(cache_dir) / f"pretrained-{safe}-{cache_key(corpus, vocab_size, settings)}.safetensors"


def pretrained_diffusion(corpus: Tensor, vocab_size: int, settings: Mapping,
                         cache_dir: str | os.PathLike, name: str = "model",
                         device: str | torch.device = "cpu", progress: bool = False) -> MaskedDiffusion:
    """The model pretrained on ``corpus (N, L)`` with the ``diffusion`` settings, cached.

    Args:
        corpus: LongTensor ``(N, L)`` of tokens in ``[0, vocab_size)``.
        vocab_size: V.
        settings: the ``diffusion`` config group (denoiser, schedule, sampler, pretrain).
        cache_dir: where checkpoints live; created if missing.
        name: a readable prefix for the file name (e.g. the task's name).
        device: where the returned model lives (and trains).
        progress: show a progress bar while pretraining.

    Returns:
        The model in eval mode, with the settings' sampler as its default.
    """
    check_corpus(corpus, vocab_size)  # before its key is computed: a float copy would share it
    path = cache_path(corpus, vocab_size, settings, cache_dir, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path.with_name(path.name + ".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another job to finish pretraining %s", path)
            lock.acquire()
    except OSError as err:  # say which setting points there (the default is relative to the working dir)
        raise OSError(err.errno, f"cache_dir {cache_dir} cannot be written ({err.strerror or err}); set "
                                 "cache_dir=… or MBO_CACHE_DIR to a writable folder") from None
    try:
        if path.exists():
            try:
                model = load_diffusion(path, settings, device=device, vocab_size=vocab_size,
                                       length=corpus.shape[1])
                if isinstance(model.denoiser, ConditionalDenoiser):
                    raise CheckpointError(f"checkpoint {path} is a CTRL model, not a pretrained prior")
                stored = read_config(path).get("spec")
                if stored is None or training_spec(stored) != training_spec(settings):
                    # Written here with these settings, unless someone put another model in its place
                    # (a fine-tuned one, another architecture).
                    raise CheckpointError(f"checkpoint {path} was not pretrained with these settings")
                log.info("loading cached pretrained model %s", path)
                return model
            except CheckpointError as err:  # a stale or broken cache entry is ours to rebuild
                log.warning("cached model unusable, pretraining again: %s", err)
        check_training_memory(corpus.shape[1], settings["denoiser"], settings["pretrain"]["batch_size"],
                              device, "diffusion.pretrain.batch_size")
        log.info("pretraining; will cache the model at %s", path)
        start = time.perf_counter()
        diffusion, history = train_diffusion(corpus, vocab_size, settings, device=device, progress=progress)
        trained = {"seconds": time.perf_counter() - start, "final_loss": history[-1]["loss"],
                   "device": str(device), "threads": torch.get_num_threads()}
        # We hold the lock, so replacing is safe; only a stale entry can be there.
        save_checkpoint(path, diffusion, {**diffusion.config, "spec": _plain(settings), "trained": trained},
                        overwrite=True)
        return diffusion
    finally:
        lock.release()


def train_diffusion(corpus: Tensor, vocab_size: int, settings: Mapping, device: str | torch.device = "cpu",
                    progress: bool = False) -> tuple[MaskedDiffusion, list[dict]]:
    """A model built and pretrained from the ``diffusion`` settings (no cache), in eval mode, and its
    training history (see :func:`~mbo.diffusion.pretrain.pretrain`)."""
    diffusion = build_diffusion(settings, vocab_size, corpus.shape[1], device=device)
    p = settings["pretrain"]
    history = pretrain(diffusion, corpus, steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"],
                       weight_decay=p["weight_decay"], warmup=p["warmup"], ema=p.get("ema", 0.0),
                       masks=p.get("masks", "time"), seed=p["seed"], device=device, progress=progress)
    return diffusion.eval(), history


def _plain(settings: Mapping) -> dict:
    if isinstance(settings, DictConfig):
        return OmegaConf.to_container(settings, resolve=True)
    return json.loads(json.dumps(settings))
