"""``mbo-run``: pretrain (or load cached) → fit reward model → conservative fine-tuning → designs.

Writes into Hydra's output directory: ``designs.csv`` and ``designs.fasta`` (distinct new designs,
ranked by the conservative reward, with ids), ``metrics.json``, ``history.json``, ``report.md`` with
PNG plots, and the resolved config (Hydra's ``.hydra/``). Every input is checked before any training;
a problem with it is one line on stderr and exit status 2.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
import traceback
from importlib.resources import files
from pathlib import Path

import hydra
import omegaconf
import torch
from filelock import FileLock, Timeout
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import (
    CompactHydraException,
    ConfigCompositionException,
    OverrideParseException,
    SearchPathException,
)
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_object, instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

from conservative import ScaledReward, choose_c_alpha, label_scale, probe_rows
from experiments.report import print_summary, write_pareto_report, write_report
from experiments.summarize import sweep_jobs
from mbo import jsonfile
from mbo.active.pareto import PARETO_METHODS, check_members, hypervolume, pareto_mask, select_pareto_batch
from mbo.atomic import atomic_write_text
from mbo.checkpoint import CheckpointError, save_checkpoint
from mbo.cli import stdout_reader_left
from mbo.config import (
    SettingsError,
    build_task,
    check_known_settings,
    hydra_error_line,
    progress_bars,
    task_data,
)
from mbo.constraints import ConstraintError, Constraints, constraints_from_settings
from mbo.ctrl.conditions import FILE_SAFE, parse_condition
from mbo.ctrl.pipeline import check_ctrl_design_space, load_ctrl_model, read_factors, run_ctrl
from mbo.data.dataset import SequenceDataset
from mbo.data.io import DataError, check_learnable, write_csv, write_fasta
from mbo.designs import (
    PLATE_COLUMNS,
    check_design_space,
    design_ids,
    ranked,
    unique_designs,
    write_plate_map,
)
from mbo.device import DeviceError, resolve_device, set_threads
from mbo.diffusion.cache import pretrained_diffusion
from mbo.diffusion.policy import Compose
from mbo.diffusion.pretrain import build_diffusion, check_training_memory, warmup_problem
from mbo.evaluate import evaluate_designs, per_design
from mbo.finetune import target_gap
from mbo.method_settings import POSITIVE_ALPHA, check_method_settings, finite_number
from mbo.provenance import provenance

log = logging.getLogger("mbo-run")


def check_settings(cfg: DictConfig) -> None:
    """Refuse settings that cannot work, before any data is read. The device is left to the machine
    that runs the job (a sweep's jobs may run on other nodes)."""
    for group in ("task", "reward_model", "diffusion", "conservative", "finetune", "method", "ctrl",
                  "constraints"):
        if not (OmegaConf.is_dict(cfg.get(group)) or (group == "method" and cfg.get(group) is None)):
            # A config saved by a run (-cp RUN/.hydra) has no groups: `reward_model=gp` sets a string.
            raise SettingsError(f"{group} is {cfg.get(group)!r}, not a group's settings; a saved config "
                                f"(-cp RUN/.hydra) has no config groups: set its keys ({group}.KEY=VALUE) "
                                "or run from the project's config")
    check_known_settings(cfg)  # +n_design=8, +finetune.iteration=5: would be ignored, or fail after training
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise SettingsError(f"{', '.join(missing)} must be given (e.g. task=csv task.path=FILE.csv)")
    # torch takes 64-bit seeds, and parts of a run add offsets to theirs; mbo-campaign's range.
    if not _is_int(cfg.seed) or not 0 <= cfg.seed < 2**32:
        raise SettingsError(f"seed must be an integer from 0 to {2**32 - 1}, got {cfg.seed!r}")
    for key, value, low in (("n_designs", cfg.n_designs, 1), ("oversample", cfg.oversample, 1),
                            ("target_samples", cfg.target_samples, 0)):
        if not _is_int(value) or value < low:
            raise SettingsError(f"{key} must be an integer >= {low}, got {value!r}")
    if cfg.threads != "auto" and not (_is_int(cfg.threads) and cfg.threads >= 1):
        raise SettingsError(f"threads must be auto or an integer >= 1, got {cfg.threads!r}")
    if cfg.plate is not None and cfg.plate not in PLATE_COLUMNS:
        raise SettingsError(f"plate must be null or one of {sorted(PLATE_COLUMNS)}, got {cfg.plate!r}")
    if cfg.pareto.method not in PARETO_METHODS:
        raise SettingsError(f"pareto.method must be one of {', '.join(PARETO_METHODS)}, got "
                            f"{cfg.pareto.method!r}")
    if cfg.mode not in ("braid", "ctrl"):
        raise SettingsError(f"mode must be braid or ctrl, got {cfg.mode!r}")
    if cfg.progress not in ("auto", True, False):
        raise SettingsError(f"progress must be auto, true or false, got {cfg.progress!r}")
    if cfg.mode == "ctrl":
        check_ctrl(cfg)
    groups = (["finetune", "auto.method", "diffusion.sampler", "diffusion.denoiser"]
              + (["method"] if cfg.get("method") is not None else []))
    for group in groups:
        check_group(OmegaConf.select(cfg, group), group)
    if "alpha" in cfg.auto.method:  # choose_c_alpha passes its own α, as it does the generator
        raise SettingsError("setting 'auto.method.alpha' is ignored: the run passes its own; set "
                            "auto.alpha_grid=… (or the design method's alpha) instead")
    if cfg.get("method") is not None and cfg.finetune.alpha == "auto":
        name = cfg.method._target_.rsplit(".", 1)[-1]
        instead = "method.alpha=auto chooses the method's" if "alpha" in cfg.method else f"{name} takes none"
        raise SettingsError(f"finetune.alpha=auto chooses the fine-tuner's alpha, but method ({name}) "
                            f"designs instead of a fine-tuned model and nothing would use it ({instead}); "
                            "drop finetune.alpha=auto (~method fine-tunes)")
    try:
        check_method_settings("pretrain", cfg.diffusion.pretrain, prefix="diffusion.pretrain.")
    except ValueError as err:
        raise SettingsError(str(err)) from None
    problem = warmup_problem(cfg.diffusion.pretrain.warmup, cfg.diffusion.pretrain.steps)
    if problem:
        raise SettingsError(problem)
    if cfg.conservative.get("c", 0) == "auto" or cfg.finetune.alpha == "auto" or method_alpha_auto(cfg):
        a = cfg.auto
        if (not a.c_grid or not a.alpha_grid or min(a.alpha_grid) < 0
                or not all(finite_number(c) and c >= 0 for c in a.c_grid)):
            raise SettingsError(f"auto.c_grid and auto.alpha_grid must be non-empty (c finite and >= 0, "
                                f"alpha >= 0), got {list(a.c_grid)} and {list(a.alpha_grid)}")
        if not _is_int(a.designs) or a.designs < 1:
            raise SettingsError(f"auto.designs must be an integer >= 1, got {a.designs!r}")
        check_auto_method(cfg)
    if not isinstance(cfg.include_offline, bool):  # "no" is a string, and a string is true
        raise SettingsError(f"include_offline must be true or false, got {cfg.include_offline!r}")


def method_alpha_auto(cfg: DictConfig) -> bool:
    """Whether an inference-time method's α is ``auto``: chosen as ``finetune.alpha=auto`` is."""
    return cfg.get("method") is not None and cfg.method.get("alpha") == "auto"


def probe_group(cfg: DictConfig) -> str:
    """The group whose α the auto probe aims at, the design method's own target: an inference-time
    method's if it has one, else the fine-tuner's."""
    return "method" if cfg.get("method") is not None and "alpha" in cfg.method else "finetune"


# How conservative.choose_c_alpha calls auto.method: this many arguments by position (the diffusion, the
# reward, n), then these by name.
AUTO_METHOD_POSITIONAL = 3
AUTO_METHOD_KEYWORDS = ("alpha", "generator")


def check_auto_method(cfg: DictConfig) -> None:
    """Refuse an ``auto.method`` the auto probe cannot call, and an α the probe would give it (or
    choose for the design) that the method given it cannot take: they would fail only after
    pretraining and the reward model's fit."""
    settings = cfg.auto.method
    name = settings._target_.rsplit(".", 1)[-1]
    try:
        params = inspect.signature(get_object(settings._target_)).parameters
    except Exception as err:  # a target that does not import, or is not callable
        raise SettingsError(f"settings of auto.method do not build ({' '.join(str(err).split())})") from None
    if "alpha" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        raise SettingsError(f"auto.method: {name} takes no alpha, and the auto probe runs it at each alpha "
                            "it tries; choose a method that takes one (e.g. mbo.guidance.svdd_pm)")
    by_position = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    passed = {p.name for p in by_position[:AUTO_METHOD_POSITIONAL]} | set(AUTO_METHOD_KEYWORDS)
    missing = [k for k, p in params.items() if p.default is p.empty and k not in passed and k not in settings
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise SettingsError(f"auto.method: {name} needs {', '.join(missing)}; give "
                            f"{' '.join(f'+auto.method.{k}=…' for k in missing)}")
    group = probe_group(cfg)
    if cfg[group].alpha != "auto":
        if cfg[group].alpha == 0 and name in POSITIVE_ALPHA:
            raise SettingsError(f"auto.method: {name} needs alpha > 0, and the auto probe runs it at "
                                f"{group}.alpha=0; choose another auto.method (e.g. mbo.guidance.svdd_pm)")
        return
    # Each α of the grid is given to the probe's method, and the one chosen to the design's.
    takers = [f"{where} ({target})" for where, target in (("auto.method", name),
                                                          (group, cfg[group]._target_.rsplit(".", 1)[-1]))
              if target in POSITIVE_ALPHA]
    if takers and any(v == 0 for v in cfg.auto.alpha_grid):
        raise SettingsError(f"auto.alpha_grid must hold only alphas > 0 for {' and '.join(takers)}, which "
                            f"weigh by exp(r/alpha), got {list(cfg.auto.alpha_grid)}")


def check_group(settings: DictConfig, group: str) -> None:
    """Refuse a method's or fine-tuner's settings (the config group ``group``) that cannot work;
    ``alpha: auto`` is chosen from the offline data before the method runs."""
    given = {k: v for k, v in settings.items() if not (k == "alpha" and v == "auto")}
    try:
        check_method_settings(settings._target_.rsplit(".", 1)[-1], given, prefix=f"{group}.")
    except ValueError as err:
        raise SettingsError(f"{err}{' (or auto)' if 'alpha must' in str(err) else ''}") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_ctrl(cfg: DictConfig) -> None:
    """Refuse CTRL settings that cannot work or would be ignored, before any training."""
    if unused := ctrl_unused(cfg):
        # A task's defaults may have chosen the method (task=ehrlich: gradient guidance), not the user.
        chosen = any(u.startswith("method=") for u in unused)
        method = " (~method drops one a task's defaults chose)" if chosen else ""
        raise SettingsError(f"mode=ctrl does not use {', '.join(unused)}; drop "
                            f"{'them' if len(unused) > 1 else 'it'}{method}")
    c = cfg.ctrl
    for j, f in enumerate(c.factors):
        if (f.get("landscape") is None) == (f.get("csv") is None):
            raise SettingsError(f"ctrl.factors[{j}] ({f.name}): give exactly one of landscape or csv")
        if f.get("landscape") is not None and not (_is_int(f.n_labels) and f.n_labels >= 2):
            raise SettingsError(f"ctrl.factors[{j}].n_labels must be an integer >= 2, got {f.n_labels!r}")
        p = list(f.percentiles)
        if not p or not all(0 < x < 100 for x in p) or p != sorted(set(p)) or len(f.classes) != len(p) + 1:
            raise SettingsError(f"ctrl.factors[{j}]: percentiles must increase strictly within (0, 100) and "
                                f"name one class more than percentiles (at least two classes), got {p} and "
                                f"{list(f.classes)}")
        for what, name in [("name", f.name), *((f"classes[{k}]", x) for k, x in enumerate(f.classes))]:
            if not FILE_SAFE.fullmatch(str(name)):  # they name files: designs_<factor>-<class>.csv
                raise SettingsError(f"ctrl.factors[{j}].{what} {str(name)!r} names the designs' files: use "
                                    "only letters, digits, '_', '-' and '.'")
        if str(f.name) in (names := [str(g.name) for g in c.factors[:j]]):
            raise SettingsError(f"ctrl.factors[{j}].name {str(f.name)!r} is also ctrl.factors"
                                f"[{names.index(str(f.name))}]'s; factor names must differ")
    classes = {str(f.name): [str(k) for k in f.classes] for f in c.factors}
    if not c.conditions:
        raise SettingsError("ctrl.conditions is empty; name at least one, e.g. ['A=high']")
    seen: dict[frozenset, str] = {}
    for text in c.conditions:
        try:
            parsed = parse_condition(text)
        except ValueError as err:
            raise SettingsError(f"ctrl.conditions: {err}") from None
        for name, cls in parsed.items():
            if name not in classes or cls not in classes[name]:
                raise SettingsError(f"ctrl.conditions: {text!r}: the factors and their classes are {classes}")
        key = frozenset(parsed.items())
        if key in seen:  # both would write one designs_<condition>.csv
            raise SettingsError(f"ctrl.conditions: {str(text)!r} is the same condition as {seen[key]!r}")
        seen[key] = str(text)
    if c.train_conditions not in ("list", "marginal"):
        raise SettingsError(f"ctrl.train_conditions must be list or marginal, got {c.train_conditions!r}")
    check_group(c.finetune, "ctrl.finetune")
    if not (finite_number(c.drop_prob) and 0 <= c.drop_prob < 1 and finite_number(c.gamma) and c.gamma > 0):
        raise SettingsError(f"ctrl.drop_prob must lie in [0, 1) and ctrl.gamma be > 0 (finite), got "
                            f"{c.drop_prob} and {c.gamma}")
    if not (_is_int(c.log_z_samples) and c.log_z_samples >= 1):
        raise SettingsError(f"ctrl.log_z_samples must be an integer >= 1, got {c.log_z_samples!r}")
    k = c.classifier
    try:
        check_method_settings("classifier", {"steps": k.steps, "lr": k.lr, "members": k.members,
                                             "hidden_dims": list(k.hidden_dims)}, prefix="ctrl.classifier.")
    except ValueError as err:
        raise SettingsError(str(err)) from None
    if not (finite_number(k.holdout) and 0 <= k.holdout < 1):  # at least one row is held out, one trained on
        raise SettingsError(f"ctrl.classifier.holdout must lie in [0, 1), got {k.holdout!r}")


def ctrl_unused(cfg: DictConfig) -> list[str]:
    """Settings given that CTRL's pipeline, which samples its conditional model alone, would ignore."""
    unused = [f"constraints.{k}" for k, v in cfg.constraints.items() if v not in (None, [], {})]
    if cfg.get("method") is not None:
        unused.append("method=" + cfg.method._target_.rsplit(".", 1)[-1])
    if cfg.plate is not None:
        unused.append(f"plate={cfg.plate}")
    return unused


def check_inputs(cfg: DictConfig, task, offline: SequenceDataset) -> Constraints:
    """Refuse what the settings cannot do with the task's data, before any training; returns the
    constraints the designs must meet."""
    try:  # a task's own settings can leave its data so (a CSV is refused where it is read)
        check_learnable(offline, f"task {task.name}", getattr(task, "label_columns", "label"))
    except DataError as err:
        raise SettingsError(f"task {task.name}: its offline data: {err.problem}") from None
    built(lambda: build_diffusion(cfg.diffusion, task.alphabet.size, task.length), "diffusion")
    model = built(lambda: instantiate(cfg.reward_model, device="cpu"), "reward_model")
    try:  # c, penalty and quantile, against this reward model (min and quantile need its members)
        c = cfg.conservative.get("c")
        instantiate(cfg.conservative, **({"c": 0.0} if c == "auto" else {}))(model)
    except (ValueError, TypeError) as err:
        raise SettingsError(f"conservative: {err}") from None
    if offline.labels.dim() == 2:
        try:
            check_members(model, task.label_columns)
        except ValueError as err:
            raise SettingsError(str(err)) from None
    given = {"conservative.c": cfg.conservative.get("c"), "finetune.alpha": cfg.finetune.alpha,
             "method.alpha": cfg.method.get("alpha") if cfg.get("method") is not None else None}
    autos = [k for k, v in given.items() if v == "auto"]
    split = getattr(model, "split", None)  # a calibrated model holds out the top labels to calibrate on
    if split is not None and offline.labels.dim() == 1:
        labels = offline.labels.double()
        splits = {"the offline labels": labels}
        if autos:  # the probe is the same model, fitted on the labels below the held-out top
            splits["the auto probe's labels"] = labels[probe_rows(labels, cfg.auto.holdout)]
        for fitted_on, y in splits.items():
            try:
                split(y)
            except ValueError as err:
                raise SettingsError(f"reward_model on {fitted_on}: {err}") from None
    columns = offline.labels.reshape(len(offline), -1).T
    for j, labels in enumerate(columns if autos else []):  # several objectives: one probe each
        probe = labels[probe_rows(labels, cfg.auto.holdout)]
        if probe.unique().numel() < 2:
            both = len(autos) > 1
            example = " ".join(f"{k}={'0' if k == 'conservative.c' else '0.03'}" for k in autos)
            column = f" of {task.label_columns[j]!r}" if len(columns) > 1 else ""
            raise SettingsError(
                f"{' and '.join(k + '=auto' for k in autos)} {'fit' if both else 'fits'} a probe on the "
                f"labels{column} below the top {cfg.auto.holdout:.0%}, and of {len(offline)} labeled "
                f"sequences that leaves {probe.unique().numel()} distinct label; give "
                f"{'both as numbers' if both else 'it as a number'} (e.g. {example})")
    check_design_space(int(cfg.n_designs), task.alphabet.size, task.length,
                       None if cfg.include_offline else offline.tokens)
    constraints = constraints_from_settings(cfg.constraints, task.alphabet, task.length,
                                            required=task.required_letters())
    if constraints.max_mutations == 0 and not cfg.include_offline:  # else found only after training
        parent = task.alphabet.encode(constraints.parent)
        if bool((offline.tokens == parent).all(-1).any()):
            raise SettingsError(f"constraints.max_mutations=0 leaves the parent {constraints.parent} as the "
                                "only design, and it is in the offline data: set include_offline=true or "
                                "constraints.max_mutations >= 1")
    return constraints


def built(build, group: str):
    """``build()``, or a SettingsError naming ``group`` whose settings it was built from."""
    try:
        return build()
    except Exception as err:  # constructors raise many kinds; each means a bad setting
        raise SettingsError(f"settings of {group} do not build ({' '.join(str(err).split())})") from None


def run(cfg: DictConfig, output_dir: Path) -> dict:
    """The whole pipeline for one config; returns the metrics written to ``metrics.json``."""
    check_settings(cfg)
    device = resolve_device(cfg.device)
    progress = progress_bars(cfg.progress)
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    task = build_task(cfg.task)
    offline, corpus = task_data(task)
    constraints = check_inputs(cfg, task, offline)
    if cfg.get("method") is None and cfg.finetune.iterations > 0:
        check_training_memory(task.length, cfg.diffusion.denoiser, cfg.finetune.batch_size, device,
                              "finetune.batch_size", what="fine-tuning")
    merged = getattr(task, "n_replicates_merged", 0)
    log.info("task %s: %d offline sequences of length %d%s", task.name, len(offline), task.length,
             f" ({merged} replicate rows merged, {task.replicates})" if merged else "")
    if constraints.active:
        log.info("constraints: %s", constraints.describe())

    pretrained = pretrained_diffusion(corpus, task.alphabet.size, cfg.diffusion,
                                      to_absolute_path(cfg.cache_dir), name=task.name, device=device,
                                      progress=progress)
    # Per-position rules enter the sampler itself: every method below draws only allowed tokens.
    # Rules first, then min-p among the allowed tokens: in the other order a letter the rules require but
    # min-p cut would sit level with every banned one.
    pretrained.policy = Compose(constraints.policy(), pretrained.policy)
    timings["pretrain_s"] = time.perf_counter() - t0

    if offline.labels.dim() == 2:
        return run_objectives(cfg, output_dir, task, offline, pretrained, constraints, device, progress,
                              timings, t0)

    t = time.perf_counter()
    reward_model = instantiate(cfg.reward_model, device=str(device)).fit(offline, seed=cfg.seed)
    reward, chosen = conservative_reward(cfg, reward_model, pretrained, offline, device)
    if chosen is not None:  # from here on the run is the one with the chosen α
        if cfg.finetune.alpha == "auto":
            cfg.finetune.alpha = chosen["alpha"]
        if method_alpha_auto(cfg):
            cfg.method.alpha = chosen["alpha"]
    timings["reward_model_s"] = time.perf_counter() - t

    t = time.perf_counter()
    # The methods see the reward in units of the labels' spread, so alpha means the same at any scale.
    scaled = ScaledReward(reward, label_scale(offline.labels))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    n = int(cfg.n_designs)
    draw, model, history, name, calls = designer(cfg, pretrained, scaled, gen, device, progress)
    timings["finetune_s"] = time.perf_counter() - t

    baseline = pretrained.sample(n, generator=gen).cpu()
    t = time.perf_counter()
    # The method's samples are the candidates; the plate is the best n of them by the reward it optimized.
    found, drawn, rejected = draw_candidates(cfg, draw, n, offline, constraints)
    timings["designs_s"] = time.perf_counter() - t
    if len(found) < n:
        log.warning("only %d distinct %sdesigns among %d samples (asked for %d)", len(found),
                    "" if cfg.include_offline else "new ", drawn, n)
    with torch.no_grad():
        score = reward(torch.nn.functional.one_hot(found, task.alphabet.size).float().to(device)).cpu()
    found, score = ranked(found, score)
    candidates, found = len(found), found[:n]
    designs = {"pretrained": baseline, name: found}
    metrics = {
        name: evaluate_designs(x, task=task, reward_model=reward_model, reward=reward,
                               offline=offline, diffusion=pretrained)
        for name, x in designs.items()
    }
    timings["total_s"] = time.perf_counter() - t0
    # Without an oracle the labels are normalized by their own range, so the best would be 1 by definition.
    best = task.best_offline if task.has_oracle else None
    result = {"task": task.name, "seed": cfg.seed, "best_offline": best,
              "best_offline_label": float(offline.labels.max()), "has_oracle": task.has_oracle,
              "n_offline": len(offline), "replicates_merged": merged,
              "designs": {"asked": n, "written": len(found), "sampled": drawn, "candidates": candidates,
                          "include_offline": bool(cfg.include_offline), "method": name,
                          "constraints": constraints.describe(), "rejected": rejected[0], **calls},
              "methods": metrics, "timings": timings, "auto": chosen}

    if model is not None:
        save_checkpoint(output_dir / "finetuned.safetensors", model, overwrite=True)
    result["provenance"] = provenance(cfg, output_dir, task, name)
    ids = design_ids(len(found))
    data = type(offline)(found, task.alphabet, ids=ids)
    cols = {"rank": list(range(1, len(found) + 1)),
            **per_design(found, task=task, reward_model=reward_model, reward=reward),
            **{k: [v] * len(found) for k, v in result["provenance"].items() if k != "command"}}
    write_csv(output_dir / "designs.csv", data, extra_columns=cols, overwrite=True)
    write_fasta(output_dir / "designs.fasta", data, overwrite=True)
    if cfg.plate is not None:
        write_plate_map(output_dir / "plate_map.csv", ids, data.sequences(), cols["pred_mean"],
                        cols["pred_std"], int(cfg.plate))
    atomic_write_text(output_dir / "history.json", jsonfile.dumps(history), overwrite=True)
    write_report(output_dir, result, designs, task, reward_model, reward, history)
    # Last: metrics.json marks the run finished (a later run refuses this folder).
    atomic_write_text(output_dir / "metrics.json", jsonfile.dumps(result, indent=2), overwrite=True)
    print_summary(result)
    return result


def run_objectives(cfg: DictConfig, output_dir: Path, task, offline, pretrained, constraints, device,
                   progress: bool, timings: dict, t0: float) -> dict:
    """Several label columns (labels ``(N, k)``): one reward model (and conservative reward) per
    objective; candidates from the design method on their sum, each in units of its labels' std; the
    plate is chosen from them by ``pareto.method`` (qNEHVI by default) to grow the measured front."""
    names = list(task.label_columns)
    n = int(cfg.n_designs)
    t = time.perf_counter()
    columns = [SequenceDataset(offline.tokens, offline.alphabet, offline.labels[:, j].contiguous(),
                               offline.ids) for j in range(len(names))]
    models, rewards, alphas, autos = [], [], [], {}
    for column, data in zip(names, columns, strict=True):
        m = instantiate(cfg.reward_model, device=str(device)).fit(data, seed=cfg.seed)
        r, chosen = conservative_reward(cfg, m, pretrained, data, device)
        models.append(m)
        rewards.append(ScaledReward(r, label_scale(data.labels)))
        alphas.append(None if chosen is None else chosen["alpha"])
        if chosen is not None:
            autos[column] = chosen
    if cfg.finetune.alpha == "auto":  # one model for the sum: the shortest leash any objective asked for
        cfg.finetune.alpha = max(alphas)
    if method_alpha_auto(cfg):
        cfg.method.alpha = max(alphas)
    timings["reward_model_s"] = time.perf_counter() - t

    t = time.perf_counter()
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    draw, model, history, name, calls = designer(cfg, pretrained, lambda x: sum(r(x) for r in rewards),
                                                 gen, device, progress)
    timings["finetune_s"] = time.perf_counter() - t
    t = time.perf_counter()
    found, drawn, rejected = draw_candidates(cfg, draw, n, offline, constraints)
    if len(found) < n:
        log.warning("only %d distinct %sdesigns among %d samples (asked for %d)", len(found),
                    "" if cfg.include_offline else "new ", drawn, n)
    # The measured front and the best rows by the summed standardized labels stand for the offline
    # data as the front a plate must grow (a Pareto filter of every row is quadratic in N).
    y = offline.labels.double()
    z = ((y - y.mean(0)) / y.std(0).clamp_min(1e-300)).sum(-1)
    keep = pareto_mask(y)
    keep[z.argsort(descending=True)[:2000]] = True
    ref = y.min(0).values
    plate = select_pareto_batch(models, found, n, vocab_size=task.alphabet.size, ref_point=ref,
                                baseline=offline.tokens[keep], method=cfg.pareto.method, seed=int(cfg.seed))
    timings["designs_s"] = time.perf_counter() - t
    designs = plate.tokens
    timings["total_s"] = time.perf_counter() - t0
    front = pareto_mask(plate.mean.double())
    result = {"task": task.name, "seed": cfg.seed, "objectives": names, "has_oracle": task.has_oracle,
              "n_offline": len(offline), "replicates_merged": getattr(task, "n_replicates_merged", 0),
              "designs": {"asked": n, "written": len(designs), "sampled": drawn, "candidates": len(found),
                          "include_offline": bool(cfg.include_offline), "method": name,
                          "selection": cfg.pareto.method, "constraints": constraints.describe(),
                          "rejected": rejected[0], **calls},
              "pareto": {"offline_front": int(pareto_mask(y).sum()), "designs_on_front": int(front.sum()),
                         "predicted_hypervolume": hypervolume(plate.mean, ref),
                         "offline_hypervolume": hypervolume(y[keep], ref),
                         "predicted_gain": hypervolume(torch.cat([y[keep], plate.mean.double()]), ref)
                         - hypervolume(y[keep], ref)},
              "timings": timings, "auto": autos or None}
    if model is not None:
        save_checkpoint(output_dir / "finetuned.safetensors", model, overwrite=True)
    result["provenance"] = provenance(cfg, output_dir, task, name)
    ids = design_ids(len(designs))
    data = type(offline)(designs, task.alphabet, ids=ids)
    cols = {"rank": list(range(1, len(designs) + 1))}
    for j, col in enumerate(names):
        cols[f"pred_mean_{col}"] = plate.mean[:, j].tolist()
        cols[f"pred_std_{col}"] = plate.std[:, j].tolist()
    cols["acquisition"] = plate.acquisition.tolist()
    cols["on_predicted_front"] = front.tolist()
    cols.update({k: [v] * len(designs) for k, v in result["provenance"].items() if k != "command"})
    write_csv(output_dir / "designs.csv", data, extra_columns=cols, overwrite=True)
    write_fasta(output_dir / "designs.fasta", data, overwrite=True)
    if cfg.plate is not None:
        write_plate_map(output_dir / "plate_map.csv", ids, data.sequences(), plate.mean, plate.std,
                        int(cfg.plate), names)
    atomic_write_text(output_dir / "history.json", jsonfile.dumps(history), overwrite=True)
    write_pareto_report(output_dir, result, y, plate.mean)
    atomic_write_text(output_dir / "metrics.json", jsonfile.dumps(result, indent=2), overwrite=True)
    hv = result["pareto"]
    print(f"{len(designs)} designs for {len(names)} objectives ({', '.join(names)}) by {cfg.pareto.method}: "
          f"{int(front.sum())} on their predicted front; predicted hypervolume "
          f"{hv['predicted_hypervolume']:.4g} (offline front {hv['offline_hypervolume']:.4g}; the designs "
          f"would add {hv['predicted_gain']:.4g})")
    return result


def draw_candidates(cfg: DictConfig, draw, n: int, offline, constraints) -> tuple[torch.Tensor, int, list]:
    """Up to ``oversample × n`` distinct candidates ``(m, L)`` from ``draw``: new unless
    ``include_offline``, meeting the constraints; with the samples drawn and ``[rejected]``."""
    # An inference-time method spends its whole budget on every draw (svdd_mc refits its value network),
    # so designs it repeats are refilled by two more draws at most; a fine-tuned model's draws are cheap.
    max_draws = 3 if cfg.get("method") is not None else 50
    rejected = [0]
    if constraints.parent is not None:  # a sample is almost never near a given parent: pull it there
        pulls, sample = torch.Generator().manual_seed(int(cfg.seed)), draw

        def draw(k: int) -> torch.Tensor:
            return constraints.pull_to_parent(sample(k).cpu(), pulls)

    found, drawn = unique_designs(draw, n * int(cfg.oversample),
                                  exclude=None if cfg.include_offline else offline.tokens,
                                  accept=constraints.satisfied if constraints.active else None,
                                  rejected=rejected, max_draws=max_draws)
    if len(found) == 0 and rejected[0]:
        offline_too = "" if rejected[0] == drawn else "; the others are in the offline data"
        raise SettingsError(f"{rejected[0]} of {drawn} designs sampled break the constraints "
                            f"({constraints.describe()}){offline_too}: no design meets them; loosen them")
    if len(found) == 0:
        raise SettingsError(f"all {drawn} designs sampled are in the offline data; set include_offline=true "
                           f"to allow them")
    return found, drawn, rejected


def designer(cfg: DictConfig, pretrained, scaled, gen: torch.Generator, device: torch.device, progress: bool):
    """The design method of the settings on the (scaled) reward: an inference-time method (``method``)
    or a fine-tuned model (``finetune``). Returns ``(draw(k) -> designs (k, L), fine-tuned model or
    None, history, method name, calls)``; ``calls`` counts what an inference-time method spent (and
    gets the fine-tuner's target gap)."""
    calls = {"reward_calls": 0, "network_calls": 0}
    if cfg.get("method") is not None:
        # Inference-time alignment: the pretrained model is steered while sampling, never trained.
        align = instantiate(cfg.method)

        def draw(k: int) -> torch.Tensor:
            out = align(pretrained, scaled, k, generator=gen, progress=progress)
            calls["reward_calls"] += out.reward_calls
            calls["network_calls"] += out.network_calls
            return out.designs

        return draw, None, [], cfg.method._target_.rsplit(".", 1)[-1], calls
    model, history = instantiate(cfg.finetune)(pretrained, scaled, alpha=cfg.finetune.alpha,
                                               seed=cfg.seed, progress=progress)
    if cfg.finetune.alpha > 0 and cfg.target_samples:  # how far it got from p_pre·exp(r/α), in nats
        calls["target"] = target_gap(model, pretrained, scaled, cfg.finetune.alpha, n=cfg.target_samples,
                                     generator=torch.Generator(device=device).manual_seed(cfg.seed))

    def draw(k: int) -> torch.Tensor:
        # On the prior's support, where the fine-tuner's roll-ins were drawn: the target p_pre·exp(r/α)
        # is zero off it.
        return model.sample(k, generator=gen, ref=pretrained)

    return draw, model, history, "finetuned", calls


def conservative_reward(cfg: DictConfig, reward_model, pretrained, offline, device: torch.device):
    """The ``conservative`` group's reward on ``reward_model``, with ``conservative.c: auto`` and
    ``finetune.alpha: auto`` resolved from the offline data (:func:`conservative.choose_c_alpha`);
    returns ``(reward, {"c", "alpha", "trials"} or None when neither is auto)``."""
    c, alpha = cfg.conservative.c, cfg.finetune.alpha
    if c != "auto" and alpha != "auto" and not method_alpha_auto(cfg):
        return instantiate(cfg.conservative)(reward_model), None
    a = cfg.auto
    held = cfg[probe_group(cfg)].alpha
    fresh = lambda: instantiate(cfg.reward_model, device=str(device))  # noqa: E731
    c, alpha, trials = choose_c_alpha(
        pretrained, offline, fresh, reward_model, instantiate(a.method),
        a.c_grid if c == "auto" else [c], a.alpha_grid if held == "auto" else [held],
        holdout=a.holdout, n=a.designs, seed=cfg.seed, exclude=offline.tokens,
        conservative=instantiate(cfg.conservative))
    log.info("auto settings chose c = %g, alpha = %g (judged medians %s)", c, alpha,
             {k: round(v["judged_median"], 4) for k, v in trials.items()})
    return instantiate(cfg.conservative, c=c)(reward_model), {"c": c, "alpha": alpha, "trials": trials}


def refuse_used_folder(directory: Path) -> None:
    """Exit 2 unless ``directory`` is new, empty, or holds only what an interrupted run left there.

    Hydra's own files (``.hydra/``, the ``*.log`` files, a sweep's ``multirun.yaml``, submitit's
    ``.submitit/``) are all an interrupted run leaves; anything else is a finished run's results or a
    user's files (the input CSV, notes), which this run's outputs would overwrite."""
    def fail(problem: str) -> None:
        print(f"mbo-run: error: {directory} {problem}", file=sys.stderr)
        sys.exit(2)

    if directory.exists() and not directory.is_dir():
        fail("is a file; hydra.run.dir / hydra.sweep.dir must name a folder")
    if directory.is_dir():
        finished = next(directory.rglob("metrics.json"), None)
        if finished is not None:
            fail(f"already holds a finished run ({finished.relative_to(directory)}); name a new "
                 "hydra.run.dir / hydra.sweep.dir or move it away")
        for path in directory.rglob("*"):
            rel = path.relative_to(directory)
            if (path.is_dir() or HYDRA_OWN & set(rel.parts) or path.suffix == ".log"
                    or rel in (MULTIRUN, RUN_LOCK)):
                continue
            fail(f"already holds {rel}, which this run would overwrite; name a new hydra.run.dir / "
                 "hydra.sweep.dir or move it away")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(f"cannot be created ({err.strerror or err})")


# Folders of Hydra and its launchers inside a run's folder, a sweep's record of itself, and the lock
# a run holds on its folder while it writes there.
HYDRA_OWN = {".hydra", ".submitit"}
MULTIRUN = Path("multirun.yaml")
RUN_LOCK = Path(".mbo-run.lock")
HELD: list[FileLock] = []  # the locks of this process's run folders


def sweep_jobs_from_env() -> int:
    """How many jobs the local launcher runs at once: ``MBO_JOBS``, or -1 (one per core) when unset or
    empty (job scripts often export it empty). Anything else exits 2 with one line."""
    text = os.environ.get("MBO_JOBS", "").strip()
    if not text:
        return -1
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1 and jobs != -1:
        print(f"mbo-run: error: MBO_JOBS={text!r}: the number of sweep jobs to run at once must be an "
              "integer >= 1 (unset or -1: one per core)", file=sys.stderr)
        sys.exit(2)
    return jobs


OmegaConf.register_new_resolver("mbo_jobs", sweep_jobs_from_env, replace=True)


def out_of_memory(err: RuntimeError) -> bool:
    """Whether ``err`` is PyTorch running out of memory, on a GPU or in the CPU allocator."""
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err)


class KeepFinishedRuns(Callback):
    """Refuse to start in a folder holding a finished run or a user's files, before Hydra writes
    anything there.

    Hydra rewrites ``.hydra/`` of its output folder before the task starts, and a run would then
    replace the designs there: both lose a finished run's record, even when the new input is bad."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._claim(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._claim(Path(config.hydra.sweep.dir))

    def _claim(self, directory: Path) -> None:
        refuse_used_folder(directory)
        # Two runs started in the same second share the default folder (outputs/DATE/TIME): the lock,
        # held until this process ends, lets only one of them write there.
        lock = FileLock(directory / RUN_LOCK)
        try:
            lock.acquire(timeout=0)
            HELD.append(lock)  # not on self: a sweep's launcher pickles its callbacks into the workers
        except Timeout:
            print(f"mbo-run: error: another mbo-run is writing into {directory}; wait for it or name a new "
                  "hydra.run.dir / hydra.sweep.dir", file=sys.stderr)
            sys.exit(2)


class CheckEveryJob(Callback):
    """Refuse a sweep with a job whose settings or input data cannot work before any job starts: the
    others would otherwise run to their end (minutes to hours) before the sweep reports it."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        loader = GlobalHydra.instance().config_loader()
        jobs, _ = sweep_jobs(config.hydra, loader)
        if jobs is None:  # another sweeper chooses its jobs as it goes: each checks its own
            return
        tasks: dict[str, object] = {}  # each task's data is read once, however many jobs share it
        for num, overrides in enumerate(jobs):
            try:
                job_cfg = loader.load_sweep_config(config, overrides)
                with open_dict(job_cfg):
                    del job_cfg["hydra"]  # as the job's own config: Hydra's settings are not the run's
                check_settings(job_cfg)
                if config.hydra.job.get("chdir"):  # a relative path is the job folder's: not read here
                    continue
                key = OmegaConf.to_yaml(job_cfg.task)
                if key not in tasks:
                    tasks[key] = build_task(job_cfg.task)
                if job_cfg.mode == "ctrl":
                    check_ctrl_design_space(job_cfg, tasks[key])
                    labeled = read_factors(job_cfg, tasks[key])
                    if job_cfg.ctrl.get("model_path"):
                        load_ctrl_model(to_absolute_path(job_cfg.ctrl.model_path), [f for f, *_ in labeled],
                                        "cpu", job_cfg.diffusion, tasks[key])
                else:
                    check_inputs(job_cfg, tasks[key], task_data(tasks[key])[0])
            except (SettingsError, DataError, ConstraintError, CheckpointError,
                    ConfigCompositionException) as err:
                # Exit, not raise: Hydra turns a callback's exception into a warning and goes on.
                problem = hydra_error_line(err) if isinstance(err, ConfigCompositionException) else err
                print(f"mbo-run: error: job {num} ({' '.join(overrides)}): {' '.join(str(problem).split())}; "
                      "no job was started", file=sys.stderr)
                sys.exit(2)
            except Exception:  # e.g. an interpolation only the job's environment resolves (env_set):
                continue  # that job reports its own error, if it has one


class JobFailed(CompactHydraException):
    """A sweep job's failure the user can act on (``status`` as :func:`failure` gives it), reported by
    :func:`main` in one line when the sweep ends."""

    def __init__(self, message: str, status: int):
        super().__init__(message, status)  # both in args: the launcher pickles it back to the sweep
        self.message, self.status = message, status

    def __str__(self) -> str:
        return self.message


# Their frames sit between main() and the project's code in a traceback, and say nothing of the failure.
FRAMEWORK_DIRS = tuple(str(Path(module.__file__).parent) for module in (hydra, omegaconf))


# Hydra's ValueError for a command line asking for two of its modes at once (`-m --cfg job`).
HYDRA_MODES = "Only one of --run, --multirun, --cfg, --info and --shell_completion"


def main() -> None:
    """``mbo-run``: the Hydra app below, with Hydra's reports of a command line it cannot compose (an
    unknown group option or key, an override that does not parse: several lines, exit status 1) and of
    a failed sweep job turned into one line, exit 2 for input, as every other error of the input."""
    if any(arg.startswith(("-cp", "--config-path", "-cn", "--config-name")) for arg in sys.argv[1:]):
        # A saved config (-cp RUN/.hydra -cn config) holds none of mbo/conf's hydra settings: its runs
        # and sweeps get the project's callbacks all the same (a finished run's folder is kept; a
        # sweep's jobs are checked before any starts).
        callbacks = OmegaConf.load(files("mbo.conf") / "config.yaml").hydra.callbacks
        sys.argv += [f"++hydra.callbacks.{name}._target_={c._target_}" for name, c in callbacks.items()]
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's own reports
        hydra_app()
        return
    # Hydra then re-raises what it would report itself, so it is reported here.
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_app()
    except JobFailed as err:
        print(err.message, file=sys.stderr)
        sys.exit(err.status)
    except (ConfigCompositionException, OverrideParseException, SearchPathException) as err:
        print(f"mbo-run: error: {hydra_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # `mbo-run --help | head`: the reader left early; what was asked is done
        stdout_reader_left()
    except Exception as err:  # a failure of the project itself: its traceback, as Hydra would trim it
        if isinstance(err, ValueError) and str(err).startswith(HYDRA_MODES):  # `mbo-run -m --cfg job`
            print(f"mbo-run: error: {err}", file=sys.stderr)
            sys.exit(2)
        report = traceback.TracebackException.from_exception(err)
        report.stack = traceback.StackSummary.from_list(
            [frame for frame in report.stack[1:] if not frame.filename.startswith(FRAMEWORK_DIRS)])
        print("".join(report.format()) + "\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete "
              "stack trace.", file=sys.stderr)
        sys.exit(1)
    finally:
        if before is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


@hydra.main(version_base="1.3", config_path="pkg://mbo.conf", config_name="config")
def hydra_app(cfg: DictConfig) -> None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.mode == "ctrl":
            check_settings(cfg)
            run_ctrl(cfg, output_dir)
        else:
            run(cfg, output_dir)
    except KeyboardInterrupt:  # every write is atomic: nothing is left half-written
        print("mbo-run: interrupted; no file was left half-written", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `mbo-run | head` read the summary table only in part: not a failure
        raise
    except Exception as err:
        known = failure(err)
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        if known is None:  # a failure of the project itself: a traceback
            if multirun:
                log.exception("failed")  # into the job's own log, where mbo-summarize reads why
            raise
        status, message = known
        if multirun or status == 1:  # the job's log gets it too, with the library's own words
            detail = " ".join(str(err).split())
            log.error("%s", message if detail in message else f"{message} ({detail[:200]})")
        if multirun:  # the launcher marks this job failed and goes on with the others
            raise JobFailed(f"mbo-run: error: {message}", status) from err
        print(f"mbo-run: error: {message}", file=sys.stderr)
        sys.exit(status)

def failure(err: Exception) -> tuple[int, str] | None:
    """``(exit status, one-line message)`` of a failure the user can act on: 2 for the input (the
    message says where), 1 for the machine (a read-only folder, a full disk, out of memory); None for a
    failure of the project itself."""
    if isinstance(err, (DataError, SettingsError, DeviceError, ConstraintError, CheckpointError)):
        return 2, " ".join(str(err).split())
    if isinstance(err, InterpolationResolutionError):  # a ${...} in the settings that names nothing
        return 2, f"settings: {' '.join(str(err).split())}"
    if isinstance(err, (OSError, MemoryError)):
        return 1, str(err)
    if isinstance(err, RuntimeError) and out_of_memory(err):
        return 1, ("out of memory: the denoiser's attention grows as length² × batch; lower "
                   "diffusion.pretrain.batch_size (and finetune.batch_size), or use a GPU (device=cuda)")
    return None

if __name__ == "__main__":
    main()
