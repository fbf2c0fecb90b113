"""Settings from the Hydra config groups of :mod:`mbo.conf`, the one place every default is set.

``mbo-run`` reads them through ``@hydra.main``; everything else (a campaign's settings, the
benchmarks, a library user who wants the app's defaults) composes them here with Hydra's Compose API,
and may lay a user's YAML file of the same nesting on top (:func:`merge_settings_file`), which refuses
unknown keys and values of the wrong type with the key named.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from functools import cache
from importlib.resources import files
from pathlib import Path

import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mbo.data.io import DataError

CONFIG_MODULE = "mbo.conf"


class SettingsError(ValueError):
    """A setting that does not exist, has the wrong type, cannot be composed or cannot work; the key is
    named (the apps exit with status 2)."""


def compose_config(config_name: str = "config", overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``mbo/conf/<config_name>.yaml`` with Hydra ``overrides`` (``key=value``, ``group=option``).

    Interpolations are left unresolved (resolve with ``OmegaConf.resolve`` or on access); the result
    is in struct mode, so a misspelt key is an error rather than a silent new setting.

    Raises:
        SettingsError: an override names an unknown key or group option, or does not parse.
    """
    # The Compose API needs Hydra's global state; a Hydra app (mbo-run) may already hold it.
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except HydraException as err:
        raise SettingsError(hydra_error_line(err)) from None
    except OmegaConfBaseException as err:
        raise SettingsError(" ".join(str(err).split())) from None
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)  # composed without a run, Hydra's own node is empty
    OmegaConf.set_struct(cfg, True)
    return cfg


def hydra_error_line(err: HydraException) -> str:
    """Hydra's message about a command line it cannot compose, as one line: its paragraphs joined by
    "; ", a list under a heading ("Available options in 'reward_model':") by commas, and the config
    search path (Hydra's internals) left out."""
    text = str(err).split("Config search path:")[0]
    parts = []
    for block in re.split(r"\n\s*\n", text):
        head, *items = [line.strip() for line in block.strip().splitlines()] or [""]
        if head:
            listed = head.endswith(":") and items
            parts.append(f"{head} {', '.join(items)}" if listed else " ".join([head, *items]))
    if text.startswith("LexerNoViableAltException"):  # Hydra's bare values allow few characters
        parts.append("a value with characters Hydra does not read bare (accents, most symbols) goes in "
                     "quotes: 'key=\"value\"'")
    return "; ".join(parts)


def check_known_settings(cfg: DictConfig, config_name: str = "config") -> None:
    """Refuse a setting no part of the run reads: a key added with ``+key=value`` (or ``++``) that is
    neither in the project's config files (``+n_design=8``, ``+diffusion.pretrain.step=5``) nor an
    argument of the class or function its group builds (``+finetune.iteration=5``), which would
    otherwise be ignored in silence or fail with a traceback after the training before it.

    A node with a ``_target_`` may hold the arguments of its target; any other node, the keys the
    config files of :mod:`mbo.conf` give it (``<config_name>.yaml``, and for each of its config groups
    every option of the group). A dict the files leave unset (``constraints.allowed``) is the user's.

    Raises:
        SettingsError: naming the first unknown setting and those that are known there.
    """
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    problem = _unknown_setting(plain, _known_settings(config_name), "")
    if problem:
        raise SettingsError(problem)


@cache
def _known_settings(config_name: str) -> dict:
    """The keys of ``<config_name>.yaml`` with, under each of its config groups, the union of the
    group's options' keys (a dict of dicts; a list of dicts stands for each of its items)."""
    return _file_settings(files(CONFIG_MODULE), f"{config_name}.yaml", "")


def _file_settings(conf, name: str, group: str) -> dict:
    """The keys of the config file ``name`` of ``group`` (a folder of :mod:`mbo.conf`), its own
    groups' (``defaults: [sampler: first_hitting]``) included."""
    loaded = yaml.safe_load(conf.joinpath(name).read_text(encoding="utf-8")) or {}
    known = _body(loaded)
    for entry in loaded.get("defaults", []):
        head = str(next(iter(entry))) if isinstance(entry, dict) else ""
        if not head or head.startswith(("override ", "/")):  # Hydra's, or a task's global choices
            continue
        subgroup, _, package = head.partition("@")  # method@seiko.pool: method's options at seiko.pool
        folder = f"{group}/{subgroup}" if group else subgroup
        options: dict = {}
        for option in conf.joinpath(folder).iterdir():
            if option.name.endswith(".yaml"):
                options = _union(options, _file_settings(conf, f"{folder}/{option.name}", folder))
        node, *parts = known, *(package or subgroup.rsplit("/", 1)[-1]).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _union(node.get(parts[-1]), options)
    return known


def _body(loaded) -> dict:
    return {k: v for k, v in (loaded or {}).items() if k not in ("defaults", "hydra")}


def _union(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return {**a, **b, **{k: _union(a[k], b[k]) for k in a.keys() & b.keys()}}
    if isinstance(a, list) and isinstance(b, list):  # a list of dicts: the keys any item may have
        items = [x for x in a + b if isinstance(x, dict)]
        merged = {}
        for item in items:
            merged = _union(merged, item)
        return [merged] if items else a
    return b if isinstance(b, dict | list) else a if a is not None else b


# Arguments the apps pass at the call (the run's seed and generator, its progress and device
# settings), which would override the same key set on a group: ``+finetune.seed=3`` would be ignored.
_SUPPLIED_AT_CALL = {"seed": "seed", "generator": "seed", "progress": "progress", "device": "device"}


def _unknown_setting(node: dict, known, path: str) -> str | None:
    if "_target_" in node:
        return _unknown_argument(node, path, known if isinstance(known, dict) else {})
    if not isinstance(known, dict):
        return None  # a dict the config files do not spell out (constraints.allowed): the user's own
    for key, value in node.items():
        name = f"{path}{key}"
        if key not in known:
            listed = ", ".join(sorted(map(str, known)))
            return f"unknown setting {name!r} (known in {path.rstrip('.') or 'the config'}: {listed})"
        sub = known.get(key)
        if isinstance(value, dict):
            problem = _unknown_setting(value, sub, f"{name}.")
        elif isinstance(value, list) and isinstance(sub, list) and sub:
            problem = next((p for j, item in enumerate(value) if isinstance(item, dict)
                            and (p := _unknown_setting(item, sub[0], f"{name}.{j}."))), None)
        else:
            problem = None
        if problem:
            return problem
    return None


def _unknown_argument(node: dict, path: str, known: dict) -> str | None:
    """A key of a ``_target_`` node that its class or function does not take, with those it takes, or
    one the app passes itself (unless the config files set it there: ``task.seed``)."""
    try:
        params = inspect.signature(get_object(str(node["_target_"]))).parameters
    except Exception:  # a target that does not import: instantiating it names the problem
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    for key, value in node.items():
        if key in _SUPPLIED_AT_CALL and key not in known:
            return (f"setting '{path}{key!s}' is ignored: the run passes its own; set "
                    f"{_SUPPLIED_AT_CALL[key]}=… instead")
        if not str(key).startswith("_") and key not in params:
            # What a config can set: keyword-only arguments and those with a default (not the model
            # or reward a function is called with).
            takes = ", ".join(k for k, p in params.items()
                              if p.kind == p.KEYWORD_ONLY or (p.default is not p.empty
                                                              and p.kind != p.POSITIONAL_ONLY))
            return (f"unknown setting '{path}{key!s}' ({str(node['_target_']).rsplit('.', 1)[-1]} "
                    f"takes {takes})")
        if isinstance(value, dict) and "_target_" in value:
            sub = known.get(key)
            problem = _unknown_argument(value, f"{path}{key}.", sub if isinstance(sub, dict) else {})
            if problem:
                return problem
    return None


def merge_settings_file(cfg: DictConfig, path: str | os.PathLike) -> DictConfig:
    """``cfg`` with the values of the YAML file at ``path`` laid on top (same nesting as ``cfg``).

    Every key of the file must exist in ``cfg``, and every value must have the type of the value it
    replaces (an int where an int is, a number where a float is, a list where a list is; ``null`` and
    interpolations are allowed anywhere a value may be unset).

    Raises:
        SettingsError: naming ``path`` and the key: a missing or unreadable file, YAML that is not a
            mapping, an unknown key, or a value of the wrong type.
    """
    p = Path(path)
    if not p.is_file():
        raise SettingsError(f"{path}: config file does not exist")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SettingsError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if loaded is None:
        return cfg
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path}: must be a mapping of settings, got {type(loaded).__name__}")
    check_types(cfg, loaded, str(path), "")
    merged = OmegaConf.merge(cfg, loaded)
    OmegaConf.set_struct(merged, True)
    return merged


def check_types(base: DictConfig, override: dict, where: str, prefix: str = "") -> None:
    """Refuse keys of ``override`` that ``base`` lacks and values whose type differs from ``base``'s."""
    for key, value in override.items():
        name = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(map(str, base.keys()))
            raise SettingsError(f"{where}: unknown setting {name!r} (known here: {known})")
        default = base._get_node(key)
        if isinstance(default, DictConfig):
            if not isinstance(value, dict):
                raise SettingsError(f"{where}: setting {name!r} is a group of settings, got {value!r}")
            check_types(default, value, where, f"{name}.")
            continue
        if value is None or (isinstance(value, str) and value.startswith("${")):
            continue
        if isinstance(default, ListConfig):
            if not isinstance(value, list):
                raise SettingsError(f"{where}: setting {name!r} must be a list, got {value!r}")
            continue
        old = default._value()
        if old is None or (isinstance(old, str) and old.startswith("${")):
            continue  # an unset or interpolated default says nothing about the type
        if not _same_kind(old, value):
            raise SettingsError(f"{where}: setting {name!r} must be {_kind(old)}, got {value!r}")


def _same_kind(old, new) -> bool:
    if old == "auto":  # a setting chosen automatically by default also takes a value (progress, threads, c)
        return isinstance(new, bool | int | float | str)
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float):
        return isinstance(new, int | float)
    return type(old) is type(new)


def _kind(value) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), f"a {type(value).__name__}")


def progress_bars(setting) -> bool:
    """The ``progress`` setting as a yes/no: ``auto`` shows bars only when stderr is a terminal, so a
    run redirected to a log file writes no carriage-return updates into it."""
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def build_task(settings: DictConfig):
    """The task of the ``task`` settings; a value its constructor refuses (an unknown landscape, a file
    that is not there) is a :class:`SettingsError` naming the task, and the input file's own problems
    stay :class:`~mbo.data.io.DataError` s. Built through a partial so Hydra does not wrap either."""
    name = settings._target_.rsplit(".", 1)[-1]
    with _refused_as_settings(name):
        factory = instantiate(settings, _partial_=True)
        params = inspect.signature(factory.func).parameters
        unknown = sorted(set(factory.keywords) - set(params))
        if unknown:  # added with +task.KEY=…: the call would fail with a TypeError
            raise SettingsError(f"task {name}: unknown setting(s) {', '.join(f'task.{k}' for k in unknown)}; "
                                f"it takes {', '.join(f'task.{k}' for k in params)}")
        return factory()


def task_data(task) -> tuple:
    """``(offline dataset, pretraining corpus (N, L))`` of a built task. Settings that cannot make them
    (more distinct mutants than the radius holds, starts that no mutant reaches) are refused as
    :func:`build_task` refuses a constructor's: a :class:`SettingsError` naming the task."""
    with _refused_as_settings(type(task).__name__):
        return task.offline_dataset(), task.pretrain_corpus()


@contextmanager
def _refused_as_settings(name: str):
    try:
        yield
    except (SettingsError, DataError):
        raise
    except (ValueError, OSError) as err:
        raise SettingsError(f"task {name}: {' '.join(str(err).split())}") from None
