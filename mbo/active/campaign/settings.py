"""A campaign's settings: the ``campaign`` config of :mod:`mbo.conf`, with the user's overrides.

They are composed once, at ``init`` (an optional YAML file of the same nesting, and Hydra overrides such
as ``reward_model=bootstrap seiko.c=2``, which win over the file), checked, and stored whole in
``campaign.json``; every later command reads them from there, so a campaign never changes its settings
under the user's feet.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path

import torch
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from mbo.active.campaign.store import CampaignError
from mbo.active.pareto import PARETO_METHODS
from mbo.active.seiko import LocalPool, spread, trust_bound
from mbo.active.selection import ACQUISITIONS
from mbo.config import CONFIG_MODULE, SettingsError, check_types, compose_config, merge_settings_file
from mbo.diffusion.pretrain import build_diffusion, warmup_problem
from mbo.method_settings import check_method_settings


def load_settings(overrides: Sequence[str] = (), path: str | os.PathLike | None = None) -> DictConfig:
    """The campaign settings: ``campaign.yaml`` with its group choices from ``overrides``, the YAML file
    ``path`` on top, and the values of ``overrides`` on top of that (the command line wins, as in Hydra).

    Raises:
        SettingsError: an unknown key, a wrong type, or a value that cannot work (the key named).
    """
    for text in overrides:  # Hydra fails on `=3` (an empty $KEY in `$KEY=3`) with a bare ValueError
        if not text.lstrip("+~").partition("=")[0].strip():
            raise SettingsError(f"command line: override {text!r} names no setting (expected KEY=VALUE)")
    try:
        cfg = compose_config("campaign", overrides)
    except SettingsError as err:
        raise _unknown_on_line(err, overrides) from None
    # Hydra takes `seiko.c=abc` for a string, so each value given on the command line is held to the type
    # of its default (under the group choices given with it), as the file's values are below.
    groups, values = _split_overrides(overrides)
    defaults = compose_config("campaign", groups)
    check_types(defaults, _nested(cfg, values), "command line")
    if path is not None:
        # The file is held to the defaults, not to the command line's values, which win over it after:
        # `seiko.c=2` (an int) must not make the file's `seiko: {c: 1.5}` a wrong type.
        given = cfg
        cfg = merge_settings_file(defaults, path)
        for key in values:
            OmegaConf.update(cfg, key, OmegaConf.select(given, key), merge=False)
    OmegaConf.resolve(cfg)
    check_values(cfg, setting_source(overrides, path))
    return cfg


def _unknown_on_line(err: SettingsError, overrides: Sequence[str]) -> SettingsError:
    """Hydra's "Could not override 'seiko.pool_sise'. To append to your config use +seiko.pool_sise=…"
    (a misspelt key; the `+` it suggests is refused too) as the file's message is: the source, the key,
    the keys known there. Any other error (an unknown group option, an override that does not parse) with
    its source named: only the command line can make the campaign config fail to compose."""
    match = re.match(r"Could not override '([^']+)'", str(err))
    try:
        parent = compose_config("campaign", _split_overrides(overrides)[0]) if match else None
    except SettingsError:
        parent = None
    if parent is None:
        for text in overrides:  # Hydra's parse errors do not say which override they are about
            try:
                OverridesParser.create().parse_overrides([text])
            except HydraException:
                return SettingsError(f"command line: override {text!r} does not parse: {err}")
        return SettingsError(f"command line: {err}")
    name = match.group(1)
    for part in name.split(".")[:-1]:
        node = parent.get(part) if isinstance(parent, DictConfig) else None
        if not isinstance(node, DictConfig):
            break
        parent = node
    known = ", ".join(map(str, parent.keys()))
    return SettingsError(f"command line: unknown setting {name!r} (known here: {known})")


def setting_source(overrides: Sequence[str], path: str | os.PathLike | None) -> Callable[[str], str]:
    """``where(name)``: who set the setting or group ``name`` (dotted), for an error message: "command
    line" (``overrides``), the YAML file ``path``, or "settings" (the defaults). The command line wins
    over the file, as in :func:`load_settings`."""
    on_line = [o.package or o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides))]
    in_file = [] if path is None else _dotted(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})

    def where(name: str) -> str:
        def sets(keys) -> bool:
            return any(k == name or k.startswith(f"{name}.") or name.startswith(f"{k}.") for k in keys)
        return "command line" if sets(on_line) else str(path) if sets(in_file) else "settings"
    return where


def set_by_user(name: str, overrides: Sequence[str], path: str | os.PathLike | None) -> str | None:
    """Who gave the setting ``name`` (dotted) a value of their own: "command line" (``overrides``,
    also as part of a group's ``{...}``), the YAML file ``path``, or None. Unlike :func:`setting_source`
    a group choice (``diffusion=masked``) sets none of its group's values: the project's files do."""
    groups, _ = _split_overrides(overrides)
    for text, o in zip(overrides, OverridesParser.create().parse_overrides(list(overrides)), strict=True):
        value = o.value()
        keys = (_dotted(value, f"{o.key_or_group}.") if isinstance(value, Mapping) and text not in groups
                else [o.key_or_group])
        if name in keys:
            return "command line"
    if path is not None and name in _dotted(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}):
        return str(path)
    return None


def _split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(group choices as given, dotted keys of the values set)`` of Hydra ``overrides``."""
    groups, values = [], []
    for text, o in zip(overrides, OverridesParser.create().parse_overrides(list(overrides)), strict=True):
        key = o.key_or_group
        if o.is_delete() or o.package is not None or files(CONFIG_MODULE).joinpath(key).is_dir():
            groups.append(text)
        else:
            values.append(key)
    return groups, values


def _nested(cfg: DictConfig, keys: Sequence[str]) -> dict:
    """The values of ``cfg`` at the dotted ``keys``, as one nested plain dict."""
    out: dict = {}
    for key in keys:
        value = OmegaConf.select(cfg, key)
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return out


def _dotted(tree: Mapping, prefix: str = "") -> list[str]:
    """The dotted keys of a nested mapping's values (``seiko.c``, ...)."""
    out = []
    for key, value in tree.items():
        out += _dotted(value, f"{prefix}{key}.") if isinstance(value, Mapping) else [f"{prefix}{key}"]
    return out


def round_options(cfg: DictConfig, start: Tensor, vocab_size: int) -> dict:
    """The keyword arguments of :func:`~mbo.active.seiko.seiko_round` (and ``run_seiko``) that the
    settings ``cfg`` give, in one place so a campaign and the benchmarks read them alike: c, alpha,
    pool_size, pool_method (None: a plain pool), local and max_unseen (None for a campaign begun
    without them; max_unseen also when ``seiko.max_unseen_below_spread`` lifts the trust region for
    starting designs ``start (N, L)`` spread over the space: :func:`~mbo.active.seiko.trust_bound`)."""
    k = cfg.seiko
    # A campaign begun before the spread rule kept its trust region whatever its starting designs.
    bound = trust_bound(k.get("max_unseen"), k.get("max_unseen_below_spread"), spread(start, vocab_size))
    return {"c": k.c, "alpha": cfg.finetune.alpha, "pool_size": k.pool_size,
            "pool_method": instantiate(k.pool) if k.get("pool") else None,
            "local": LocalPool(**k.local) if k.get("local") else None, "max_unseen": bound}


def check_stored_settings(stored: Mapping, overrides: Sequence[str], where: os.PathLike | str) -> dict:
    """Settings read back from ``campaign.json``: the same keys as the campaign config composed with
    the ``overrides`` given at init (group choices add keys), values of their types. Returns them with
    the integer keys JSON wrote as strings given back (:func:`_keys_as_composed`)."""
    try:
        defaults = compose_config("campaign", overrides)
    except SettingsError as err:
        raise CampaignError(f"{where}: key 'overrides': {err}") from None
    OmegaConf.resolve(defaults)
    stored = _keys_as_composed(defaults, stored)
    try:
        check_types(defaults, stored, str(where), "settings.")
        missing = sorted(set(_missing(defaults, stored, "settings.")) - ADDED_SINCE)
        if missing:
            raise SettingsError(f"{where}: setting(s) {missing} are missing (was the file edited?)")
        check_values(OmegaConf.create(stored), str(where))
    except SettingsError as err:
        raise CampaignError(str(err)) from None
    return stored


def _keys_as_composed(defaults: DictConfig, stored: Mapping) -> dict:
    """``stored`` with each key that is the digits of an integer key of ``defaults`` made that integer
    again: JSON keys are strings, so `constraints.allowed={2: AC}` on init's command line comes back
    from campaign.json as {"2": "AC"}, which the settings composed anew (with int keys) would not
    know. A key the defaults hold as a string stays one."""
    out: dict = {}
    for key, value in stored.items():
        if (isinstance(key, str) and key not in defaults and re.fullmatch(r"-?\d+", key)
                and int(key) in defaults):
            key = int(key)
        node = defaults._get_node(key) if key in defaults else None
        if isinstance(value, Mapping) and isinstance(node, DictConfig):
            value = _keys_as_composed(node, value)
        out[key] = value
    return out


# Settings added to campaign.yaml after campaigns were begun without them. Such a campaign goes on as
# it was set up (the round reads them with .get): no local share, a plainly sampled pool, no trust region.
ADDED_SINCE = {"settings.seiko.local", "settings.seiko.pool", "settings.seiko.max_unseen",
               "settings.seiko.max_unseen_below_spread"}


def _missing(defaults: DictConfig, stored: Mapping, prefix: str) -> list[str]:
    out = []
    for key in defaults:
        if key not in stored:
            out.append(f"{prefix}{key}")
        elif isinstance(defaults[key], DictConfig) and "_target_" not in defaults[key]:
            if isinstance(stored[key], Mapping):
                out += _missing(defaults[key], stored[key], f"{prefix}{key}.")
    return out


def check_values(cfg: DictConfig, where: str | Callable[[str], str]) -> None:
    """Values that have the right type but cannot work; the checks the constructors do not make.
    ``where`` names the source of the settings, or of each setting by its dotted name."""
    source = where if callable(where) else lambda name: where

    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise SettingsError(f"{source(name)}: setting {name!r} {what}")

    if cfg.device != "auto":
        try:
            torch.device(cfg.device)
        except RuntimeError:
            raise SettingsError(f"{source('device')}: setting 'device' must be auto, cpu, cuda, cuda:N or "
                                f"mps, got {cfg.device!r}") from None
    need(cfg.threads >= 1, "threads", "must be >= 1")
    k = cfg.seiko
    need(k.acquisition in ACQUISITIONS, "seiko.acquisition", f"must be one of {', '.join(ACQUISITIONS)}")
    need(k.kl_to in ("previous", "pretrained"), "seiko.kl_to", "must be previous or pretrained")
    need(k.infeasible in ("impute", "drop"), "seiko.infeasible", "must be impute or drop")
    # inf would pass init and then stop every round (seiko_round refuses it); the settings cannot change
    need(math.isfinite(k.c) and k.c >= 0, "seiko.c", f"must be a finite number >= 0, got {k.c!r}")
    need(isinstance(cfg.cache_dir, str), "cache_dir", f"must be a folder path, got {cfg.cache_dir!r} "
         f"(a number? quote it: cache_dir=\"'{cfg.cache_dir}'\")")
    need(cfg.pareto.method in PARETO_METHODS, "pareto.method", f"must be one of {', '.join(PARETO_METHODS)}")
    need(k.pool_size >= 1, "seiko.pool_size", "must be >= 1")
    need(k.min_distance >= 1, "seiko.min_distance", "must be >= 1")
    need(k.get("max_unseen") is None or (isinstance(k.max_unseen, int) and k.max_unseen >= 0),
         "seiko.max_unseen", "must be an integer >= 0 or null")
    below = k.get("max_unseen_below_spread")
    need(below is None or (not isinstance(below, bool) and isinstance(below, int | float) and below > 0),
         "seiko.max_unseen_below_spread", f"must be a number > 0 or null, got {below!r}")
    try:
        LocalPool(**k.get("local") or {})
    except (TypeError, ValueError) as err:
        raise SettingsError(f"{source('seiko.local')}: settings of 'seiko.local' do not build "
                            f"({err})") from None
    # The fine-tuner and the pool's method, if any. `finetune.alpha: auto` is mbo-run's (it holds out
    # the top labels, which a campaign's first rounds cannot spare), so here alpha must be a number.
    for group in ("finetune", "seiko.pool", "diffusion.pretrain", "diffusion.sampler"):
        settings = OmegaConf.select(cfg, group)
        if settings is None:
            continue
        where = settings._target_.rsplit(".", 1)[-1] if "_target_" in settings else "pretrain"
        for key, value in settings.items():  # one at a time, to name the source of the one refused
            try:
                check_method_settings(where, {key: value}, f"{group}.")
            except ValueError as err:
                raise SettingsError(f"{source(f'{group}.{key}')}: {err}") from None


def build_check(cfg: DictConfig, vocab_size: int, length: int, where: Callable[[str], str]) -> None:
    """Build every part once (diffusion model, reward model, fine-tuner) so a value no constructor
    accepts is refused at ``init``, before any training, with the group named (``where``: as
    :func:`setting_source` gives it)."""
    if cfg.seiko.min_distance > length:  # two sequences of length L differ in at most L positions
        raise SettingsError(f"{where('seiko.min_distance')}: setting 'seiko.min_distance' "
                            f"({cfg.seiko.min_distance}) is more than the sequences' length ({length}): no "
                            "two designs could share a plate")
    # Here, not in check_values: campaigns begun with a short trial pretraining must still open.
    problem = warmup_problem(cfg.diffusion.pretrain.warmup, cfg.diffusion.pretrain.steps)
    if problem:
        raise SettingsError(f"{where('diffusion.pretrain.warmup')}: {problem}")
    parts = {"diffusion": lambda: build_diffusion(cfg.diffusion, vocab_size, length),
             "reward_model": lambda: instantiate(cfg.reward_model, device="cpu"),
             "finetune": lambda: instantiate(cfg.finetune)}
    for group, build in parts.items():
        try:
            build()
        except Exception as err:  # constructors raise many kinds; each means a bad setting
            raise SettingsError(f"{where(group)}: settings of {group!r} do not build "
                                f"({' '.join(str(err).split())})") from None
