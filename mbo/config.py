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
from pathlib import Path

import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.utils import instantiate
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
    return "; ".join(parts)


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
