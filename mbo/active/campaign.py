"""``mbo-campaign``: a wet-lab campaign of SEIKO rounds, kept in one directory between plates.

Commands (``mbo-campaign COMMAND --help`` for the options)::

    mbo-campaign init DIR --data START.csv [--alphabet dna] [--corpus FILE] [--config FILE.yaml]
    mbo-campaign init DIR --task ehrlich [--task-arg key=value ...]     # a benchmark with an oracle
    mbo-campaign suggest DIR --batch N [--force]      # next plate -> DIR/round_XXX/suggestions.csv
    mbo-campaign ingest DIR RESULTS.csv [--id-column id] [--value-column value]
    mbo-campaign status DIR                           # per-round table, DIR/status.png
    mbo-campaign simulate DIR --rounds R --batch N    # --task campaigns: the oracle plays the lab

State layout (everything human-readable except the two kinds of checkpoint)::

    DIR/campaign.json           written once by init: format version, created time, alphabet (name,
                                letters), length, seed, where the start data and the pretraining
                                corpus came from (file names and columns, or the task spec that
                                rebuilds the oracle), and the full settings (model, diffusion,
                                reward model, SEIKO)
    DIR/pretrained.safetensors  the diffusion model pretrained at init (round 0's KL reference)
    DIR/measurements.csv        THE measured data: id,sequence,value,round,source; the start data has
                                round -1 and source = the init file name; value -inf = measured
                                infeasible / failed (counted, not fitted). Replaced atomically, whole.
    DIR/round_XXX/model.safetensors   θ_i, fine-tuned in round i (round i+1's reference)
    DIR/round_XXX/suggestions.csv     id,sequence,predicted_mean,predicted_std,acquisition; ids
                                      rXXX_NNNN, unique over the campaign. Written last in a round:
                                      a round directory without it is an interrupted round, which
                                      the next ``suggest`` redoes (same seeds, same plate).
    DIR/round_XXX/results/      a byte copy of every results file ingested for the round (never
                                overwritten: a different file of the same name gets NAME.1.csv)
    DIR/round_XXX/oracle_results.csv  simulate only: the oracle's values for the round's plate
    DIR/status.png              written by ``status``

Every write is atomic (temporary file, then rename), and a command that fails on the user's input
exits with status 2 and one line on stderr, having changed nothing on disk. Commands on one
directory take an OS lock on it, so two cannot interleave. Round ``r`` uses seed ``seed * 1000 + r``:
the same directory contents and command give the same suggestions.
"""

from __future__ import annotations

import argparse
import copy
import csv
import fcntl
import inspect
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mbo.active.seiko import feasible_rows, seiko_round
from mbo.active.selection import ACQUISITIONS
from mbo.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from mbo.checkpoint import CheckpointError, save_checkpoint
from mbo.data.alphabet import Alphabet, get_alphabet
from mbo.data.dataset import SequenceDataset
from mbo.data.io import DataError, _Problems, _read_text, csv_records, read_csv, read_fasta, write_csv
from mbo.device import resolve_device
from mbo.diffusion import MaskedDiffusion, TransformerDenoiser, load_masked_diffusion, pretrain

FORMAT = "mbo-campaign/1"

DEFAULTS: dict[str, Any] = {
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "threads": 1,      # torch CPU threads
    "diffusion": {
        # The local convolution learns neighbour constraints (banned transitions, stems) fast.
        "denoiser": {"dim": 64, "depth": 2, "heads": 4, "local_kernel": 3},
        "pretrain": {"steps": 3000, "batch_size": 256, "lr": 2e-3},
        "sampling_steps": 32,
    },
    "reward_model": {
        "class": "DeepEnsemble",  # or BootstrapEnsemble
        "num_members": 5,
        "conv_channels": [64, 64],
        "kernel_size": 5,
        "hidden_dims": [64],
        "epochs": 30,
        "batch_size": 128,
        "lr": 1e-3,
        "weight_decay": 1e-4,
    },
    "seiko": {
        "c": 1.0,
        "alpha": 0.1,
        "acquisition": "ucb",
        "pool_size": 1000,
        "min_distance": 1,
        "kl_to": "previous",  # or pretrained
        "infeasible": "impute",  # measured -inf enter the fit at the lowest value; or drop
        "finetune": {"iterations": 60, "batch_size": 32, "sampling_steps": 16, "backprop_steps": 4,
                     "lr": 1e-3, "hard": True, "tau": 1.0},
    },
}
"""Settings of a new campaign; ``init --config FILE.yaml`` overrides any of them (same nesting)."""

REWARD_MODELS = ("DeepEnsemble", "BootstrapEnsemble")
MEASUREMENT_COLUMNS = ["id", "sequence", "value", "round", "source"]
SUGGESTION_COLUMNS = ["id", "sequence", "predicted_mean", "predicted_std", "acquisition"]
SUGGESTION_ID = re.compile(r"^r(\d{3,})_(\d{4,})$")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".faa", ".ffn")


class CampaignError(Exception):
    """A user error that is not about one data file (wrong state, bad setting): exit status 2."""


# ---------------------------------------------------------------------------------------- settings
def _merge(base: dict, override: Any, where: str, prefix: str = "") -> dict:
    """``base`` with ``override``'s values; unknown keys and wrong types are errors."""
    if not isinstance(override, dict):
        raise CampaignError(f"{where}: {prefix.rstrip('.') or 'the file'} must be a mapping of settings, "
                            f"got {type(override).__name__}")
    out = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(map(str, base))
            raise CampaignError(f"{where}: unknown setting {name!r} (known here: {known})")
        default = base[key]
        if isinstance(default, dict):
            out[key] = _merge(default, value, where, f"{name}.")
            continue
        ok = {bool: lambda v: isinstance(v, bool),
              int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
              str: lambda v: isinstance(v, str),
              list: lambda v: isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                                          for i in v)}[type(default)](value)
        if not ok:
            want = "a list of integers" if isinstance(default, list) else f"a {type(default).__name__}"
            raise CampaignError(f"{where}: setting {name!r} must be {want}, got {value!r}")
        out[key] = float(value) if isinstance(default, float) else value
    return out


def _check_settings(s: dict, where: str) -> None:
    """Values that have the right type but cannot work."""
    def need(cond: bool, name: str, what: str) -> None:
        if not cond:
            raise CampaignError(f"{where}: setting {name!r} {what}")

    try:
        torch.device(s["device"]) if s["device"] != "auto" else None
    except RuntimeError:
        raise CampaignError(f"{where}: setting 'device' must be auto, cpu, cuda or cuda:N, "
                            f"got {s['device']!r}") from None
    need(s["threads"] >= 1, "threads", "must be >= 1")
    d = s["diffusion"]
    for key in ("dim", "depth", "heads"):
        need(d["denoiser"][key] >= 1, f"diffusion.denoiser.{key}", "must be >= 1")
    lk = d["denoiser"]["local_kernel"]
    need(lk == 0 or (lk > 0 and lk % 2 == 1), "diffusion.denoiser.local_kernel", "must be 0 or odd")
    need(d["denoiser"]["dim"] % d["denoiser"]["heads"] == 0, "diffusion.denoiser.dim",
         "must be divisible by diffusion.denoiser.heads")
    for key in ("steps", "batch_size"):
        need(d["pretrain"][key] >= 1, f"diffusion.pretrain.{key}", "must be >= 1")
    need(d["pretrain"]["lr"] > 0, "diffusion.pretrain.lr", "must be > 0")
    need(d["sampling_steps"] >= 1, "diffusion.sampling_steps", "must be >= 1")
    r = s["reward_model"]
    need(r["class"] in REWARD_MODELS, "reward_model.class", f"must be one of {', '.join(REWARD_MODELS)}")
    need(r["num_members"] >= 2, "reward_model.num_members", "must be >= 2 (the std needs two members)")
    need(r["kernel_size"] >= 1 and r["kernel_size"] % 2 == 1, "reward_model.kernel_size",
         "must be odd and >= 1")
    for key in ("epochs", "batch_size"):
        need(r[key] >= 1, f"reward_model.{key}", "must be >= 1")
    need(r["lr"] > 0 and r["weight_decay"] >= 0, "reward_model.lr", "must be > 0 (weight_decay >= 0)")
    need(len(r["hidden_dims"]) >= 1 and min(r["hidden_dims"]) >= 1 and min(r["conv_channels"] or [1]) >= 1,
         "reward_model.hidden_dims", "and conv_channels must be positive (at least one hidden layer)")
    k = s["seiko"]
    need(k["acquisition"] in ACQUISITIONS, "seiko.acquisition", f"must be one of {', '.join(ACQUISITIONS)}")
    need(k["kl_to"] in ("previous", "pretrained"), "seiko.kl_to", "must be previous or pretrained")
    need(k["infeasible"] in ("impute", "drop"), "seiko.infeasible", "must be impute or drop")
    need(k["c"] >= 0 and k["alpha"] >= 0, "seiko.c", "and seiko.alpha must be >= 0")
    need(k["pool_size"] >= 1 and k["min_distance"] >= 1, "seiko.pool_size", "and min_distance must be >= 1")
    f = k["finetune"]
    for key in ("iterations", "batch_size", "sampling_steps", "backprop_steps"):
        need(f[key] >= 1, f"seiko.finetune.{key}", "must be >= 1")
    need(f["lr"] > 0 and f["tau"] > 0, "seiko.finetune.lr", "and tau must be > 0")


def load_settings(path: str | os.PathLike | None) -> dict:
    """:data:`DEFAULTS` overridden by the YAML file at ``path`` (if any), checked."""
    if path is None:
        settings = copy.deepcopy(DEFAULTS)
    else:
        p = Path(path)
        if not p.is_file():
            raise CampaignError(f"{path}: config file does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise CampaignError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
        settings = _merge(DEFAULTS, {} if loaded is None else loaded, str(path))
    _check_settings(settings, str(path) if path else "settings")
    return settings


# ---------------------------------------------------------------------------------------- the store
@dataclass(frozen=True)
class Measurement:
    id: str
    sequence: str
    value: float
    round: int
    source: str


@dataclass(frozen=True)
class Suggestion:
    id: str
    sequence: str
    predicted_mean: float
    predicted_std: float
    acquisition: float
    round: int


@dataclass
class Campaign:
    """An open campaign directory (its ``campaign.json`` read and checked)."""

    dir: Path
    meta: dict

    @property
    def alphabet(self) -> Alphabet:
        a = self.meta["alphabet"]
        return Alphabet(a["letters"], a["name"])

    @property
    def length(self) -> int:
        return int(self.meta["length"])

    @property
    def settings(self) -> dict:
        return self.meta["settings"]

    @property
    def measurements_path(self) -> Path:
        return self.dir / "measurements.csv"

    def round_dir(self, r: int) -> Path:
        return self.dir / f"round_{r:03d}"

    def encode(self, seqs: list[str]) -> torch.Tensor:
        return self.alphabet.encode_batch(seqs).reshape(len(seqs), self.length)


def open_campaign(directory: str | os.PathLike) -> Campaign:
    """Read ``DIR/campaign.json``; a missing or foreign directory is a :class:`CampaignError`."""
    d = Path(directory)
    path = d / "campaign.json"
    if not d.is_dir():
        raise CampaignError(f"{d}: no such campaign directory (create one with `mbo-campaign init`)")
    if not path.is_file():
        raise CampaignError(f"{d}: not a campaign directory (no campaign.json)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CampaignError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CampaignError(f"{path}: not an {FORMAT} campaign (format {found!r})")
    return Campaign(d, meta)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive OS lock on the directory itself (no lock file; released if the process dies)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CampaignError(f"{directory}: another mbo-campaign command is working on this campaign; "
                                f"wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _need_columns(path: Path, header: list[str], header_line: int, wanted: list[str]) -> dict[str, int]:
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; the header has {header}", header_line)
    repeated = [c for c in wanted if header.count(c) > 1]
    if repeated:
        raise DataError(path, f"column(s) {repeated} appear more than once in the header", header_line)
    return {c: header.index(c) for c in wanted}


def _parse_value(raw: str, what: str = "value") -> float | str:
    """A measured value (``-inf`` allowed: infeasible / failed), or what is wrong with it."""
    if not raw:
        return f"empty {what}"
    try:
        value = float(raw)
    except ValueError:
        return f"{what} {raw!r} is not a number"
    if math.isnan(value):
        return f"{what} {raw!r} is NaN; write -inf for a measured infeasible / failed design"
    if value == math.inf:
        return f"{what} {raw!r} is +inf; only -inf (measured infeasible / failed) is allowed"
    if math.isfinite(value) and not math.isfinite(float(np.float32(value))):
        return f"{what} {raw!r} is too large (beyond float32)"
    return value


def read_measurements(c: Campaign) -> list[Measurement]:
    """Every row of ``measurements.csv``, checked (it may have been edited by hand)."""
    path = c.measurements_path
    header, header_line, records = csv_records(path, _read_text(path))
    col = _need_columns(path, header, header_line, MEASUREMENT_COLUMNS)
    problems = _Problems(path, "row")
    out: list[Measurement] = []
    seen: dict[str, int] = {}
    for line, fields in records:
        if len(fields) != len(header):
            problems.add(line, f"malformed CSV: {len(fields)} fields, but the header has {len(header)}")
            continue
        get = {name: fields[i].strip() for name, i in col.items()}
        if not get["id"]:
            problems.add(line, "empty id", "id")
        elif get["id"] in seen:
            problems.add(line, f"id {get['id']!r} is also used in row {seen[get['id']]}", "id")
        seen.setdefault(get["id"], line)
        seq = get["sequence"]
        if c.alphabet.unknown_letters(seq) or len(seq) != c.length:
            problems.add(line, f"sequence {seq!r} is not a length-{c.length} sequence of "
                               f"{c.alphabet.letters}", "sequence")
        value = _parse_value(get["value"])
        if isinstance(value, str):
            problems.add(line, value, "value")
        try:
            rnd = int(get["round"])
        except ValueError:
            problems.add(line, f"round {get['round']!r} is not an integer", "round")
            continue
        if isinstance(value, float):
            out.append(Measurement(get["id"], seq, value, rnd, get["source"]))
    problems.raise_first()
    return out


def _format_value(value: float) -> str:
    return repr(float(value))


def write_measurements(c: Campaign, rows: list[Measurement], overwrite: bool = True) -> None:
    """Replace ``measurements.csv`` with ``rows`` in one atomic rename."""
    with atomic_path(c.measurements_path, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(MEASUREMENT_COLUMNS)
            for m in rows:
                w.writerow([m.id, m.sequence, _format_value(m.value), m.round, m.source])
    _fsync_dir(c.dir)
    # Temporary files of writers killed mid-write (we hold the campaign's lock: none is live).
    for stale in c.dir.glob(f".{c.measurements_path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def round_numbers(c: Campaign) -> list[int]:
    """Every ``round_XXX`` directory's number, sorted."""
    out = []
    for p in c.dir.iterdir():
        m = re.fullmatch(r"round_(\d{3,})", p.name)
        if m and p.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


def read_suggestions(c: Campaign, r: int) -> list[Suggestion] | None:
    """Round ``r``'s suggestions, or ``None`` if it has none (never suggested, or interrupted)."""
    path = c.round_dir(r) / "suggestions.csv"
    if not path.is_file():
        return None
    header, header_line, records = csv_records(path, _read_text(path))
    col = _need_columns(path, header, header_line, SUGGESTION_COLUMNS)
    out = []
    for line, fields in records:
        try:
            get = {name: fields[i].strip() for name, i in col.items()}
            out.append(Suggestion(get["id"], get["sequence"], float(get["predicted_mean"]),
                                  float(get["predicted_std"]), float(get["acquisition"]), r))
        except (IndexError, ValueError):
            raise DataError(path, "not a suggestions file written by mbo-campaign (edited?)", line) from None
    return out


def suggested_rounds(c: Campaign) -> dict[int, list[Suggestion]]:
    """Rounds that have suggestions, ``0 .. n-1`` (a gap means the directory was tampered with)."""
    rounds = {}
    for r in round_numbers(c):
        s = read_suggestions(c, r)
        if s is not None:
            rounds[r] = s
    if sorted(rounds) != list(range(len(rounds))):
        raise CampaignError(f"{c.dir}: rounds with suggestions are {sorted(rounds)}, not "
                            f"0..{len(rounds) - 1}; was a round directory removed or renamed?")
    return rounds


# ---------------------------------------------------------------------------------------- init
TASKS = {"ehrlich": "mbo.tasks.ehrlich.Ehrlich"}
"""Benchmark tasks a campaign can be initialized from (they have an oracle, so ``simulate`` works)."""


def _task_class(name: str):
    import importlib

    if name not in TASKS:
        raise CampaignError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    module, cls = TASKS[name].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def _parse_task_args(items: list[str]) -> dict:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CampaignError(f"--task-arg {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def build_task(spec: dict):
    """The task described by ``{"name": ..., "args": {...}}`` (as stored in ``campaign.json``)."""
    cls = _task_class(spec["name"])
    params = inspect.signature(cls).parameters
    unknown = sorted(set(spec["args"]) - set(params))
    if unknown:
        raise CampaignError(f"task {spec['name']}: unknown argument(s) {unknown}; it takes "
                            f"{', '.join(params)}")
    try:
        return cls(**spec["args"])
    except (TypeError, ValueError, AssertionError) as err:
        raise CampaignError(f"task {spec['name']} with {spec['args']}: {err}") from None


def _sniff_header(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for fields in csv.reader(f):
                if fields and any(x.strip() for x in fields):
                    return [x.strip() for x in fields]
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    return []


def _start_from_file(args) -> tuple[SequenceDataset, torch.Tensor, dict, str]:
    try:
        alphabet = get_alphabet(args.alphabet)
    except ValueError as err:
        raise CampaignError(f"--alphabet {args.alphabet!r}: {err}") from None
    id_column = args.id_column
    if id_column is None and "id" in _sniff_header(args.data):
        id_column = "id"
    data = read_csv(args.data, alphabet, sequence_column=args.sequence_column,
                    label_columns=args.label_column, id_column=id_column)
    if data.ids is None:
        data.ids = [f"start_{i:04d}" for i in range(len(data))]
    else:
        for ident in data.ids:
            if SUGGESTION_ID.match(ident):
                raise DataError(args.data, f"id {ident!r} looks like a suggestion id (rNNN_NNNN), which "
                                           f"mbo-campaign reserves for its own plates; rename it",
                                column=id_column)
    if args.corpus is None:
        corpus = data.tokens
    elif Path(args.corpus).suffix.lower() in FASTA_SUFFIXES:
        corpus = read_fasta(args.corpus, alphabet, length=data.length).tokens
    else:
        corpus = read_csv(args.corpus, alphabet, sequence_column=args.sequence_column, label_columns=None,
                          length=data.length).tokens
    start = {"data": Path(args.data).name, "sequence_column": args.sequence_column,
             "label_column": args.label_column, "id_column": id_column,
             "corpus": None if args.corpus is None else Path(args.corpus).name}
    return data, corpus, start, Path(args.data).name


def _start_from_task(args) -> tuple[SequenceDataset, torch.Tensor, dict, Any]:
    spec = {"name": args.task, "args": _parse_task_args(args.task_arg or [])}
    task = build_task(spec)
    data = task.offline_dataset()
    if data.ids is None:
        data.ids = [f"start_{i:04d}" for i in range(len(data))]
    return data, task.pretrain_corpus(), {"task": spec}, f"{task.name}:offline"


def init(args, progress: bool) -> str:
    target = Path(args.dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CampaignError(f"{target}: exists and is not an empty directory; init needs a new one")
    if (args.data is None) == (args.task is None):
        raise CampaignError("init needs exactly one of --data FILE.csv or --task NAME")
    if args.task_arg and args.task is None:
        raise CampaignError("--task-arg needs --task")
    settings = load_settings(args.config)
    if args.data is not None:
        data, corpus, start, source = _start_from_file(args)
    else:
        data, corpus, start, source = _start_from_task(args)
    if len(data) < 2:
        raise CampaignError(f"{source}: need at least 2 measured designs to start, got {len(data)}")

    torch.set_num_threads(settings["threads"])
    device = resolve_device(settings["device"])
    alphabet, length = data.alphabet, data.length
    d = settings["diffusion"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        denoiser = TransformerDenoiser(alphabet.size, length, **d["denoiser"])
    diffusion = MaskedDiffusion(denoiser, alphabet.size, length).to(device)
    p = d["pretrain"]
    history = pretrain(diffusion, corpus, steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"],
                       seed=args.seed, device=device, progress=progress)

    meta = {"format": FORMAT, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "alphabet": {"name": alphabet.name, "letters": alphabet.letters}, "length": length,
            "seed": args.seed, "start": {**start, "size": len(data)},
            "corpus_size": len(corpus), "pretrain_nelbo": history[-1]["loss"] if history else None,
            "settings": settings}
    # Build the whole directory next to the target, then rename it into place: a crash leaves no
    # half-made campaign (only a hidden temporary directory, removed here when we can).
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.init-"))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        staged = Campaign(tmp, meta)
        atomic_write_text(tmp / "campaign.json", json.dumps(meta, indent=2) + "\n")
        save_checkpoint(tmp / "pretrained.safetensors", diffusion)
        values = [str(np.float32(v)) for v in data.labels.tolist()]
        write_measurements(staged, [Measurement(i, s, float(v), -1, source)
                                    for i, s, v in zip(data.ids, data.sequences(), values, strict=True)],
                           overwrite=False)
        try:
            os.rename(tmp, target)  # replaces an empty target directory; refuses a non-empty one
        except OSError:
            raise CampaignError(f"{target}: appeared meanwhile and is not empty; init needs a new one"
                                ) from None
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    best = float(data.labels.max())
    return (f"campaign {target}: {len(data)} starting measurements (best {best:g}), alphabet "
            f"{alphabet.name} ({alphabet.letters}), length {length}; pretrained on {len(corpus)} sequences "
            f"({d['pretrain']['steps']} steps, NELBO {meta['pretrain_nelbo']:.4f}). "
            f"Next: mbo-campaign suggest {target} --batch N")


# ---------------------------------------------------------------------------------------- suggest
def _make_reward_model(settings: dict, device: torch.device):
    from reward_models import MODEL_CLASSES

    kwargs = dict(settings["reward_model"])
    cls = MODEL_CLASSES[kwargs.pop("class")]
    return cls(**kwargs, device=str(device))


def suggest(c: Campaign, batch: int, force: bool = False, progress: bool = False) -> Path:
    """Run the next SEIKO round and write its plate; returns the ``suggestions.csv`` path."""
    if batch < 1:
        raise CampaignError(f"--batch must be >= 1, got {batch}")
    rounds = suggested_rounds(c)
    measurements = read_measurements(c)
    r = len(rounds)
    if r > 0 and not force:
        measured_last = sum(m.round == r - 1 for m in measurements)
        if measured_last == 0:
            raise CampaignError(f"round {r - 1}'s {len(rounds[r - 1])} suggestions have no results yet: "
                                f"ingest them first (mbo-campaign ingest {c.dir} RESULTS.csv), or pass "
                                f"--force to suggest round {r} without them")
    s = c.settings
    k = s["seiko"]
    torch.set_num_threads(s["threads"])
    device = resolve_device(s["device"])
    try:
        data = feasible_rows(c.encode([m.sequence for m in measurements]),
                             torch.tensor([m.value for m in measurements], dtype=torch.float32),
                             c.alphabet, k["infeasible"])
    except ValueError as err:
        raise CampaignError(f"{c.measurements_path}: {err}") from None
    # Never suggest a design again: neither a measured one nor one already on an earlier plate.
    seen = sorted({m.sequence for m in measurements} | {x.sequence for sg in rounds.values() for x in sg})
    exclude = c.encode(seen)
    if r == 0 or k["kl_to"] == "pretrained":
        ref_path = c.dir / "pretrained.safetensors"
    else:
        ref_path = c.round_dir(r - 1) / "model.safetensors"
    reference = load_masked_diffusion(ref_path, device=device, vocab_size=c.alphabet.size, length=c.length)
    seed = int(c.meta["seed"]) * 1000 + r
    torch.manual_seed(seed)
    try:
        result = seiko_round(reference, data, _make_reward_model(s, device), batch_size=batch, c=k["c"],
                             alpha=k["alpha"], acquisition=k["acquisition"], pool_size=k["pool_size"],
                             min_distance=k["min_distance"], exclude=exclude, finetune=dict(k["finetune"]),
                             sampling_steps=s["diffusion"]["sampling_steps"], seed=seed, progress=progress)
    except ValueError as err:  # e.g. a pool with no new design: nothing is written yet
        raise CampaignError(f"round {r}: {err}") from None
    sel = result.selection
    if len(sel.tokens) < batch:
        print(f"mbo-campaign suggest: only {len(sel.tokens)} of {batch} designs: the pool of "
              f"{k['pool_size']} samples had too few new, distinct ones (raise seiko.pool_size)",
              file=sys.stderr)
    rdir = c.round_dir(r)
    # Replaces only the model of an interrupted round (no suggestions.csv), recomputed the same way.
    save_checkpoint(rdir / "model.safetensors", result.model, overwrite=True)
    ids = [f"r{r:03d}_{i:04d}" for i in range(len(sel.tokens))]
    path = rdir / "suggestions.csv"
    write_csv(path, SequenceDataset(sel.tokens, c.alphabet, ids=ids),
              extra_columns={"predicted_mean": sel.mean, "predicted_std": sel.std,
                             "acquisition": sel.acquisition})
    _fsync_dir(rdir)
    return path


# ---------------------------------------------------------------------------------------- ingest
def _store_copy(folder: Path, name: str, data: bytes) -> str:
    """Keep ``data`` as ``folder/name`` (or ``name.K`` if another file has that name); its name."""
    stem, suffix = os.path.splitext(name)
    k = 0
    while True:
        candidate = folder / (name if k == 0 else f"{stem}.{k}{suffix}")
        if not candidate.exists():
            atomic_write_bytes(candidate, data)
            return candidate.name
        if candidate.is_file() and candidate.read_bytes() == data:
            return candidate.name  # an earlier, interrupted ingest of this very file
        k += 1


def ingest(c: Campaign, results: str | os.PathLike, id_column: str = "id",
           value_column: str = "value") -> str:
    """Validate a whole results file, then add its new measurements; returns a one-line report."""
    path = Path(results)
    measurements = read_measurements(c)
    known = {m.id: m for m in measurements}
    rounds = suggested_rounds(c)
    suggestions = {x.id: x for sg in rounds.values() for x in sg}
    text = _read_text(path)
    raw_bytes = path.read_bytes()
    header, header_line, records = csv_records(path, text)
    if id_column == value_column:
        raise CampaignError(f"--id-column and --value-column must differ, both are {id_column!r}")
    col = _need_columns(path, header, header_line, [id_column, value_column])
    seq_col = header.index("sequence") if "sequence" in header and "sequence" not in col else None
    if not records:
        raise DataError(path, "no data rows after the header")

    upper = c.alphabet.letters.isupper()

    def norm(seq: str) -> str:  # as the readers do: strip, upper-case for an upper-case alphabet
        return seq.strip().upper() if upper else seq.strip()

    problems = _Problems(path, "row")
    seen: dict[str, int] = {}
    new: list[tuple[Suggestion, float]] = []
    already = 0
    for line, fields in records:
        if len(fields) != len(header):
            problems.add(line, f"malformed CSV: {len(fields)} fields, but the header has {len(header)}")
            continue
        ident = fields[col[id_column]].strip()
        value = _parse_value(fields[col[value_column]].strip())
        if isinstance(value, str):
            problems.add(line, value, value_column)
        if not ident:
            problems.add(line, "empty id", id_column)
            continue
        if ident in seen:
            problems.add(line, f"id {ident!r} is also used in row {seen[ident]}", id_column)
            continue
        seen[ident] = line
        sugg = suggestions.get(ident)
        if sugg is None:
            m = SUGGESTION_ID.match(ident)
            if m and int(m.group(1)) not in rounds:
                problems.add(line, f"id {ident!r} is from round {int(m.group(1))}, which was never suggested "
                                   f"(suggested rounds: {len(rounds)})", id_column)
            elif ident in known:
                problems.add(line, f"id {ident!r} is a starting measurement, not a suggestion", id_column)
            else:
                problems.add(line, f"unknown id {ident!r}: not in any round's suggestions.csv", id_column)
            continue
        if seq_col is not None and norm(fields[seq_col]) != sugg.sequence:
            problems.add(line, f"sequence {fields[seq_col].strip()!r} is not the sequence suggested as "
                               f"{ident!r} ({sugg.sequence})", "sequence")
        if isinstance(value, str):
            continue
        if ident in known:
            if known[ident].value != value:
                problems.add(line, f"conflict: {ident!r} was already ingested with value "
                                   f"{_format_value(known[ident].value)} (from {known[ident].source}); this "
                                   f"file says {_format_value(value)}", value_column)
            else:
                already += 1
            continue
        new.append((sugg, value))
    problems.raise_first()

    if not new:
        return f"nothing to do: all {already} results in {path} were already ingested with the same values"
    sources = {r: _store_copy(c.round_dir(r) / "results", path.name, raw_bytes)
               for r in sorted({s.round for s, _ in new})}
    added = [Measurement(s.id, s.sequence, v, s.round, sources[s.round]) for s, v in new]
    write_measurements(c, measurements + added)
    infeasible = sum(not math.isfinite(v) for _, v in new)
    per_round = ", ".join(
        f"round {r}: {sum(m.round == r for m in measurements + added)}/{len(rounds[r])} measured"
        for r in sources)
    return (f"ingested {len(new)} results from {path} ({infeasible} infeasible/failed"
            + (f", {already} already ingested" if already else "") + f"); {per_round}")


# ---------------------------------------------------------------------------------------- status
def round_table(c: Campaign) -> list[dict]:
    """One dict per round (the start data first): counts, feasibility, best values, predictions."""
    measurements = read_measurements(c)
    rounds = suggested_rounds(c)
    rows, best = [], -math.inf
    for r in [-1, *rounds]:
        ms = [m for m in measurements if m.round == r]
        finite = [m for m in ms if math.isfinite(m.value)]
        best_round = max((m.value for m in finite), default=-math.inf)
        best = max(best, best_round)
        pred = {s.id: s.predicted_mean for s in rounds.get(r, [])}
        row = {"round": "start" if r < 0 else str(r), "suggested": len(rounds[r]) if r >= 0 else None,
               "measured": len(ms), "feasible": len(finite) / len(ms) if ms else None,
               "best_round": best_round if finite else None,
               "best_so_far": best if math.isfinite(best) else None,
               "pred_mean": float(np.mean([pred[m.id] for m in finite])) if finite and pred else None,
               "actual_mean": float(np.mean([m.value for m in finite])) if finite and pred else None}
        rows.append(row)
    return rows


def _table_text(rows: list[dict]) -> str:
    heads = ["round", "suggested", "measured", "feasible", "best_round", "best_so_far", "pred_mean",
             "actual_mean"]

    def cell(v) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [heads] + [[cell(row[h]) for h in heads] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(heads))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells)


def _plot(c: Campaign, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ms = read_measurements(c)
    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n_start = sum(m.round < 0 for m in ms)
    ordered = [m for m in ms if m.round < 0] + sorted((m for m in ms if m.round >= 0), key=lambda m: m.round)
    xs = np.arange(1, len(ordered) + 1)
    vals = np.array([m.value for m in ordered])
    finite = np.isfinite(vals)
    best = np.maximum.accumulate(np.where(finite, vals, -np.inf))
    low = vals[finite].min() if finite.any() else 0.0
    for r in sorted({m.round for m in ordered}):
        sel = np.array([m.round == r for m in ordered])
        label = "start data" if r < 0 else f"round {r}"
        ax.scatter(xs[sel & finite], vals[sel & finite], s=12, label=label, alpha=0.8)
        if (sel & ~finite).any():
            ax.scatter(xs[sel & ~finite], np.full((sel & ~finite).sum(), low), marker="x", color="k", s=14)
    ok = np.isfinite(best)
    ax.step(xs[ok], best[ok], where="post", color="k", lw=1.5, label="best so far")
    ax.axvline(n_start + 0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("number of measurements (x: infeasible / failed)")
    ax.set_ylabel("measured value")
    ax.set_title(f"{c.dir.name}: {len(ms) - n_start} measurements in {len({m.round for m in ms}) - 1} rounds")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def status(c: Campaign) -> str:
    rows = round_table(c)
    _plot(c, c.dir / "status.png")
    outstanding = sum((row["suggested"] or 0) - row["measured"] for row in rows[1:])
    return (_table_text(rows) + f"\n{sum(r['measured'] for r in rows)} measurements, {outstanding} suggested "
            f"designs without results; plot: {c.dir / 'status.png'}")


# ---------------------------------------------------------------------------------------- simulate
def simulate(c: Campaign, rounds: int, batch: int, progress: bool = False) -> str:
    """Play the lab with the task's oracle until the campaign has ``rounds`` ingested rounds."""
    spec = c.meta["start"].get("task")
    if spec is None:
        raise CampaignError(f"{c.dir}: simulate needs a campaign initialized with --task (this one has no "
                            f"oracle: its start data came from {c.meta['start'].get('data')})")
    if rounds < 1 or batch < 1:
        raise CampaignError(f"--rounds and --batch must be >= 1, got {rounds} and {batch}")
    suggested_rounds(c)  # refuse a tampered directory before doing anything
    task = build_task(spec)
    lines = []
    for r in range(rounds):
        measured = {m.round for m in read_measurements(c)}
        have = suggested_rounds(c)
        if r in have and r in measured:
            continue
        if r not in have:
            suggest(c, batch, progress=progress)
        plate = read_suggestions(c, r)
        oracle_path = c.round_dir(r) / "oracle_results.csv"
        if not oracle_path.exists():
            values = task.oracle(c.encode([s.sequence for s in plate])).tolist()
            with atomic_path(oracle_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["id", "sequence", "value"])
                for s, v in zip(plate, values, strict=True):
                    w.writerow([s.id, s.sequence, _format_value(v)])
        ingest(c, oracle_path)
        row = round_table(c)[r + 1]  # rows: the start data, then rounds 0, 1, ...
        lines.append(f"round {r}: {row['measured']} measured, feasible {row['feasible']:.2f}, best "
                     f"{_fmt(row['best_round'])}, best so far {_fmt(row['best_so_far'])}")
    if not lines:
        return f"nothing to do: {c.dir} already has {rounds} or more ingested rounds"
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


# ---------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mbo-campaign", description="Wet-lab campaigns of SEIKO rounds: "
                                "suggest a plate, ingest its measurements, repeat.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--progress", action="store_true",
                        help="show progress bars (default: only when stderr is a terminal)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    q = sub.add_parser("init", parents=[common], help="start a campaign: read the start data, pretrain",
                       description="Start a campaign in a new directory: read the measured start data, "
                                   "pretrain the diffusion model, store everything.")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--data", metavar="FILE.csv", help="measured start data (sequence and label columns)")
    q.add_argument("--sequence-column", default="sequence")
    q.add_argument("--label-column", default="label")
    q.add_argument("--id-column", default=None, help="column of unique ids (default: 'id' if present)")
    q.add_argument("--alphabet", default="dna", help="dna, rna, protein, or the letters (default dna)")
    q.add_argument("--corpus", metavar="FILE", help="unlabeled pretraining sequences, CSV or FASTA "
                                                    "(default: the start data's sequences)")
    q.add_argument("--task", choices=sorted(TASKS), help="start from a benchmark task instead of --data")
    q.add_argument("--task-arg", action="append", metavar="KEY=VALUE", help="task argument (repeatable)")
    q.add_argument("--config", metavar="FILE.yaml", help="settings overriding the defaults")
    q.add_argument("--seed", type=int, default=0)

    q = sub.add_parser("suggest", parents=[common], help="run the next round, write its suggestions.csv")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--batch", type=int, required=True, metavar="N", help="designs on the plate")
    q.add_argument("--force", action="store_true", help="suggest even if the last plate has no results")

    q = sub.add_parser("ingest", parents=[common], help="add measured values from a results CSV")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("results", metavar="RESULTS.csv")
    q.add_argument("--id-column", default="id")
    q.add_argument("--value-column", default="value")

    q = sub.add_parser("status", parents=[common], help="per-round table and DIR/status.png")
    q.add_argument("dir", metavar="DIR")

    q = sub.add_parser("simulate", parents=[common], help="--task campaigns: let the oracle play the lab")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--rounds", type=int, required=True, metavar="R", help="total rounds wanted (resumes)")
    q.add_argument("--batch", type=int, required=True, metavar="N")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mbo-campaign``; returns the exit status (2 for every user error)."""
    args = _parser().parse_args(argv)
    progress = args.progress or sys.stderr.isatty()
    try:
        if args.command == "init":
            message = init(args, progress)
        else:
            directory = Path(args.dir)
            open_campaign(directory)
            with _locked(directory):
                c = open_campaign(directory)
                if args.command == "suggest":
                    message = f"wrote {suggest(c, args.batch, args.force, progress)}"
                elif args.command == "ingest":
                    message = ingest(c, args.results, args.id_column, args.value_column)
                elif args.command == "status":
                    message = status(c)
                else:
                    message = simulate(c, args.rounds, args.batch, progress)
    except (CampaignError, DataError, CheckpointError) as err:
        print(f"mbo-campaign {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
