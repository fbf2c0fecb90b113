"""The campaign's commands: init, suggest, ingest, status, simulate (each returns a one-line report).

Writers are called with the campaign's lock held (see :mod:`mbo.active.campaign.cli`); each validates
everything it was given before it changes anything on disk, and then changes it atomically.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mbo.active.campaign.settings import (
    build_check,
    load_settings,
    round_options,
    set_by_user,
    setting_source,
)
from mbo.active.campaign.store import (
    FORMAT,
    RESERVED,
    SUGGESTION_ID,
    Campaign,
    CampaignError,
    Measurement,
    Suggestion,
    checksums,
    fsync_dir,
    interrupted_round,
    load_model,
    plate_files,
    plate_provenance,
    read_measurements,
    read_suggestions,
    record,
    save_model,
    suggested_rounds,
    write_measurements,
    write_suggestions,
)
from mbo.active.campaign.store import format_value as _format_value
from mbo.active.pareto import check_members, hypervolume, pareto_mask
from mbo.active.seiko import feasible_rows, seiko_pareto_round, seiko_round, spread, trust_bound
from mbo.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from mbo.checkpoint import save_checkpoint
from mbo.config import SettingsError, task_data
from mbo.constraints import ConstraintError, constraints_from_settings
from mbo.data.alphabet import get_alphabet
from mbo.data.io import (
    DataError,
    Problems,
    check_learnable,
    csv_header,
    csv_records,
    decode_text,
    malformed_row,
    parse_number,
    read_csv,
    read_fasta,
    read_file_bytes,
    require_columns,
)
from mbo.designs import write_plate_map
from mbo.device import DeviceError, resolve_device, set_threads
from mbo.diffusion.cache import pretrained_diffusion
from mbo.diffusion.pretrain import check_training_memory
from mbo.display import formatted, plural

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".faa", ".ffn")

TASKS = {"ehrlich": "mbo.tasks.ehrlich.Ehrlich"}
"""Benchmark tasks a campaign can be initialized from (they have an oracle, so ``simulate`` works)."""


# ---------------------------------------------------------------------------------------- init
def _task_class(name: str):
    if name not in TASKS:
        raise CampaignError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    module, cls = TASKS[name].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def parse_task_args(items: list[str]) -> dict:
    """``["key=value", ...]`` to a dict, values parsed as YAML scalars."""
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


def _start_from_file(data_path, alphabet_name, sequence_column, label_column, id_column, corpus_path):
    try:
        alphabet = get_alphabet(alphabet_name)
    except ValueError as err:
        raise CampaignError(f"--alphabet {alphabet_name!r}: {err}") from None
    labels = [name.strip() for name in label_column.split(",")]
    if len(labels) > 1:
        clash = sorted(set(labels) & RESERVED) or sorted({n for n in labels if labels.count(n) > 1 or not n})
        if clash:
            raise CampaignError(f"--label-column {label_column!r}: objective names must be distinct, "
                                f"non-empty and none of {sorted(RESERVED)} (got {clash})")
    if id_column is None and "id" in csv_header(data_path) and "id" not in (sequence_column, *labels):
        id_column = "id"
    data = read_csv(data_path, alphabet, sequence_column=sequence_column,
                    label_columns=labels if len(labels) > 1 else labels[0], id_column=id_column)
    check_learnable(data, data_path, labels)
    if data.ids is None:
        data.ids = [f"start_{i:04d}" for i in range(len(data))]
    else:
        for ident in data.ids:
            if SUGGESTION_ID.match(ident):
                raise DataError(data_path, f"id {ident!r} looks like a suggestion id (rNNN_NNNN), which "
                                           f"mbo-campaign reserves for its own plates; rename it",
                                column=id_column)
    if corpus_path is None:
        corpus = data.tokens
    elif Path(corpus_path).suffix.lower() in FASTA_SUFFIXES:
        corpus = read_fasta(corpus_path, alphabet, length=data.length,
                            length_source=f"the length of {Path(data_path).name}'s sequences").tokens
    else:
        corpus = read_csv(corpus_path, alphabet, sequence_column=sequence_column, label_columns=None,
                          length=data.length,
                          length_source=f"the length of {Path(data_path).name}'s sequences").tokens
    start = {"data": Path(data_path).name, "sequence_column": sequence_column,
             "label_column": labels if len(labels) > 1 else labels[0], "id_column": id_column,
             "corpus": None if corpus_path is None else Path(corpus_path).name}
    return data, corpus, start, Path(data_path).name


def _start_from_task(name: str, task_args: list[str]):
    spec = {"name": name, "args": parse_task_args(task_args)}
    try:
        task = build_task(spec)
        data, corpus = task_data(task)
    except (CampaignError, SettingsError) as err:
        # The task names its settings as mbo-run's task.KEY; here they were given as --task-arg KEY=…
        raise type(err)(re.sub(r"\btask\.(\w+)", r"--task-arg \1", str(err))) from None
    check_learnable(data, f"task {task.name}", "value")  # before pretraining, as a --data start is
    if data.ids is None:
        data.ids = [f"start_{i:04d}" for i in range(len(data))]
    return data, corpus, {"task": spec}, f"{task.name}:offline"


def init(directory: str | os.PathLike, *, data: str | None = None, task: str | None = None,
         task_args: list[str] | None = None, sequence_column: str = "sequence",
         label_column: str = "label", id_column: str | None = None, alphabet: str = "dna",
         corpus: str | None = None, config: str | None = None, overrides: list[str] | None = None,
         seed: int = 0, progress: bool = False) -> str:
    """Create a campaign in the new (or empty) ``directory``: validate, pretrain, store everything."""
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CampaignError(f"{target}: exists and is not an empty directory; init needs a new one")
    here = Path.cwd()
    if target.exists() and (here == target.resolve() or target.resolve() in here.parents):
        # The campaign is built beside DIR and renamed into place, which would leave this shell in a
        # deleted folder.
        raise CampaignError(f"{target}: is the current folder (or holds it); run init from the folder "
                            f"above, e.g. cd ..; mbo-campaign init {here.name} ...")
    if (data is None) == (task is None):
        raise CampaignError("init needs exactly one of --data FILE.csv or --task NAME")
    if task_args and task is None:
        raise CampaignError("--task-arg needs --task")
    settings = load_settings(overrides or [], config)
    # The campaign's seed is its pretraining seed: one number reproduces the whole directory. A seed
    # set in the settings would be overwritten by it, unseen.
    given = set_by_user("diffusion.pretrain.seed", overrides or [], config)
    if given is not None:
        wanted = OmegaConf.select(settings, "diffusion.pretrain.seed")
        raise CampaignError(f"{given}: setting 'diffusion.pretrain.seed' is set by init from --seed, the "
                            f"campaign's one seed; leave it out and give "
                            + (f"--seed {wanted}" if isinstance(wanted, int) else "--seed N") + " instead")
    settings.diffusion.pretrain.seed = seed
    if data is not None:
        start_data, corpus_tokens, start, source = _start_from_file(data, alphabet, sequence_column,
                                                                    label_column, id_column, corpus)
    else:
        start_data, corpus_tokens, start, source = _start_from_task(task, task_args or [])
    if len(start_data) < 2:
        raise CampaignError(f"{source}: need at least 2 measured designs to start, got {len(start_data)}")
    abc, length = start_data.alphabet, start_data.length
    where = setting_source(overrides or [], config)
    build_check(settings, abc.size, length, where)
    objectives = start.get("label_column") if start_data.labels.dim() == 2 else None
    if objectives:
        try:
            check_members(instantiate(settings.reward_model, device="cpu"), objectives)
        except ValueError as err:
            raise CampaignError(f"{where('reward_model')}: {err}") from None
    try:
        constraints_from_settings(settings.constraints, abc, length).check()
    except ConstraintError as err:
        raise CampaignError(f"{where('constraints')}: {err}") from None

    set_threads(settings.threads)
    device = resolve_device(settings.device)
    if settings.finetune.iterations > 0:  # refused now, not killed by the kernel rounds later
        check_training_memory(length, settings.diffusion.denoiser, settings.finetune.batch_size, device,
                              "finetune.batch_size", what="fine-tuning")
    # Named after the corpus, not the campaign: a second campaign on the same corpus and recipe
    # (another folder) loads the cached model instead of pretraining it again.
    corpus_name = start["task"]["name"] if "task" in start else Path(start["corpus"] or start["data"]).stem
    diffusion = pretrained_diffusion(corpus_tokens, abc.size, settings.diffusion, settings.cache_dir,
                                     name=corpus_name, device=device, progress=progress)
    with torch.no_grad():
        sample = corpus_tokens[:512].to(device)
        nelbo = float(-diffusion.elbo(sample, n_samples=8, generator=torch.Generator(device).manual_seed(0))
                      .mean()) / length
    meta = {"format": FORMAT, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "alphabet": {"name": abc.name, "letters": abc.letters}, "length": length,
            "seed": seed, "start": {**start, "size": len(start_data)},
            "corpus_size": len(corpus_tokens), "pretrain_nelbo": nelbo,
            "overrides": list(overrides or []), "settings": OmegaConf.to_container(settings, resolve=True),
            **({"objectives": list(objectives)} if objectives else {})}
    # Build the whole directory next to the target, then rename it into place: a crash leaves no
    # half-made campaign, only a hidden directory named with this process's id, which the next
    # command on this campaign removes once the process is gone.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.init-{os.getpid()}-"))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        staged = Campaign(tmp, meta)
        atomic_write_text(tmp / "campaign.json", json.dumps(meta, indent=2) + "\n")
        save_checkpoint(tmp / "pretrained.safetensors", diffusion)
        record(tmp, "campaign.json", "pretrained.safetensors")
        # As float32 text, the precision the labels were read at.
        values = [tuple(float(str(np.float32(v))) for v in row)
                  for row in start_data.labels.reshape(len(start_data), -1).tolist()]
        write_measurements(staged, [Measurement(i, s, v, -1, source) for i, s, v in
                                    zip(start_data.ids, start_data.sequences(), values, strict=True)],
                           overwrite=False)
        try:
            os.rename(tmp, target)  # replaces an empty target directory; refuses a non-empty one
        except OSError:
            raise CampaignError(f"{target}: appeared meanwhile and is not empty; init needs a new one"
                                ) from None
        fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    top = start_data.labels.reshape(len(start_data), -1).max(0).values.tolist()
    best = (", ".join(f"{o} {formatted([v])[0]}" for o, v in zip(objectives, top, strict=True)) if objectives
            else formatted(top)[0])
    k = settings.seiko
    if k.max_unseen is not None and k.max_unseen_below_spread is not None:  # what the start decided
        gap = spread(start_data.tokens, abc.size)
        held = trust_bound(k.max_unseen, k.max_unseen_below_spread, gap)
        plates = (f" The starting designs' spread is {gap:.2f} of random sequences': "
                  + (f"plates keep to the trust region (seiko.max_unseen {k.max_unseen})." if held is not None
                     else f"not below seiko.max_unseen_below_spread ({k.max_unseen_below_spread}), so plates "
                          "have no trust region."))
    else:
        plates = ""
    return (f"campaign {target}: {len(start_data)} starting measurements (best {best}), alphabet "
            f"{abc.name} ({abc.letters}), length {length}; pretrained on {len(corpus_tokens)} "
            f"sequences ({settings.diffusion.pretrain.steps} steps, NELBO {nelbo:.4f} nats/token).{plates} "
            f"Next: mbo-campaign suggest {target} --batch N")


# ---------------------------------------------------------------------------------------- suggest
def suggest(c: Campaign, batch: int, force: bool = False, progress: bool = False,
            plate: int | None = None, on_device: str | None = None) -> Path:
    """Run the next SEIKO round and write its plate; returns the ``suggestions.csv`` path.

    With ``plate`` (96 or 384) also ``round_XXX/plate_map.csv``: plate, well, id, sequence, predicted
    mean and std.
    ``on_device`` runs this round on another device than the campaign's setting (a campaign begun on a
    GPU machine goes on on a laptop)."""
    if batch < 1:
        raise CampaignError(f"--batch must be >= 1, got {batch}")
    measurements = read_measurements(c)
    rounds = suggested_rounds(c, measurements)
    r = len(rounds)
    if r > 0 and not force:
        measured_last = sum(m.round == r - 1 for m in measurements)
        if measured_last == 0:
            raise CampaignError(f"round {r - 1}'s {len(rounds[r - 1])} suggestions have no results yet: "
                                f"ingest them first (mbo-campaign ingest {c.dir} RESULTS.csv), or pass "
                                f"--force to suggest round {r} without them")
    s = c.settings
    k = s.seiko
    set_threads(s.threads)
    try:
        device = resolve_device(on_device or s.device)
    except DeviceError as err:
        # Its hint names the setting (device=cpu), which is fixed at init; a round moves with --device.
        hint = re.sub(r"\bdevice=(\w+)", r"--device \1", str(err))
        raise DeviceError(hint if on_device else f"{c.dir / 'campaign.json'}, setting 'device': {hint}"
                          ) from None
    try:
        values = torch.tensor([m.values for m in measurements], dtype=torch.float32)
        data = feasible_rows(c.encode([m.sequence for m in measurements]),
                             values if len(c.objectives) > 1 else values[:, 0], c.alphabet, k.infeasible)
    except ValueError as err:
        raise CampaignError(f"{c.measurements_path}: {err}") from None
    # Never suggest a design again: neither a measured one nor one already on an earlier plate.
    seen = sorted({m.sequence for m in measurements} | {x.sequence for sg in rounds.values() for x in sg})
    exclude = c.encode(seen)
    left = c.alphabet.size ** c.length - len(seen)
    if left == 0:
        raise CampaignError(f"every one of the {len(seen):,} sequences of length {c.length} over "
                            f"{c.alphabet.size} letters is measured or suggested: no new design is left")
    ref_name = ("pretrained.safetensors" if r == 0 or k.kl_to == "pretrained"
                else f"round_{r - 1:03d}/model.safetensors")
    reference = load_model(c, ref_name, device)
    seed = int(c.meta["seed"]) * 1000 + r
    torch.manual_seed(seed)
    start = c.encode([m.sequence for m in measurements if m.round < 0])
    shared = {"batch_size": batch, **round_options(s, start, c.alphabet.size), "exclude": exclude,
              "sampler": reference.sampler,
              "constraints": c.constraints if c.constraints.active else None,
              "fallback": lambda: load_model(c, "pretrained.safetensors", device), "seed": seed,
              "progress": progress}
    try:
        if len(c.objectives) > 1:
            models = [instantiate(s.reward_model, device=str(device)) for _ in c.objectives]
            result = seiko_pareto_round(reference, data, models, instantiate(s.finetune),
                                        method=s.pareto.method, **shared)
        else:
            result = seiko_round(reference, data, instantiate(s.reward_model, device=str(device)),
                                 instantiate(s.finetune), acquisition=k.acquisition,
                                 min_distance=k.min_distance, **shared)
    except ValueError as err:  # e.g. a pool with no new design: nothing is written yet
        raise CampaignError(f"round {r}: {err}") from None
    sel = result.selection
    # Only when the plate holds every sequence left is the space the limit, not the pool.
    if len(sel.tokens) < batch and len(sel.tokens) >= left:
        print(f"mbo-campaign suggest: only {len(sel.tokens)} of {batch} designs: {left} sequences of this "
              f"length and alphabet are neither measured nor suggested", file=sys.stderr)
    elif len(sel.tokens) < batch:
        print(f"mbo-campaign suggest: only {len(sel.tokens)} of {batch} designs: the pool (seiko.pool_size "
              f"{k.pool_size}, topped up from the prior when short) had too few new, distinct ones (the "
              "settings are fixed at init: a campaign begun with a larger seiko.pool_size draws more)",
              file=sys.stderr)
    # Replaces only the model of an interrupted round (no recorded plate), recomputed the same way.
    model_name = f"round_{r:03d}/model.safetensors"
    save_model(c, model_name, result.model)
    sums = checksums(c.dir)
    if result.rejected:
        print(f"mbo-campaign suggest: {result.rejected} pool samples broke the constraints "
              f"({c.constraints.describe()}) and were left out", file=sys.stderr)
    made_by = {"round": r, "seed": seed, "model_sha256": sums[model_name],
               "reference_sha256": sums[ref_name], "campaign_sha256": sums["campaign.json"],
               "command": f"mbo-campaign suggest {Path(os.path.abspath(c.dir)).name} --batch {batch}"
                          + (" --force" if force else "") + (f" --plate {plate}" if plate else "")
                          + (f" --device {on_device}" if on_device else "")}
    plate_map = c.round_dir(r) / "plate_map.csv"
    if plate is not None:  # before the plate is recorded: a round killed in between is redone whole
        ids = [f"r{r:03d}_{i:04d}" for i in range(len(sel.tokens))]
        write_plate_map(plate_map, ids, c.alphabet.decode(sel.tokens), sel.mean, sel.std, plate,
                        c.objectives)
    else:  # one an interrupted --plate run of this round left would name wells of another plate
        plate_map.unlink(missing_ok=True)
    return write_suggestions(c, r, sel.tokens, sel.mean, sel.std, sel.acquisition, made_by)


# ---------------------------------------------------------------------------------------- ingest
def _read_once(path: Path) -> tuple[bytes, str, str]:
    """The results file's bytes, their text (checked as :func:`~mbo.data.io.read_text` checks a file),
    and the name their kept copy gets (:func:`_copy_name`). Read once: a pipe (`<(cat f)`, a FIFO,
    /dev/stdin) gives its bytes to the first reader only, and the copy kept must be what was checked."""
    data = read_file_bytes(path)
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError:  # a descriptor closed once read: not a file of its own name
        regular = False
    return data, decode_text(path, data), _copy_name(path, regular)


def _copy_name(path: Path, regular: bool) -> str:
    """The name of the kept copy of results read from ``path``: the file's own, but results.csv for a
    pipe or a descriptor (`<(cat f)` is /dev/fd/63), whose name says nothing of the results. A hidden
    file's copy is not hidden: the next writer removes ``.*.tmp`` files there, as those of killed
    writers."""
    path = Path(os.path.abspath(path))
    if regular and path.parts[1:2] in (("dev",), ("proc",)):
        path = Path(os.path.realpath(path))  # `/dev/stdin < plate.csv` keeps plate.csv
    name = path.name.lstrip(".")
    return name if regular and name and not name.isdigit() else "results.csv"


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
    """Validate a whole results file, then add its new measurements; returns a one-line report.

    A campaign with several objectives reads one column per objective, named as at ``init``, instead
    of ``value_column``; one objective reads ``value``, or, in a file without that column, the label
    column named at ``init``."""
    path = Path(results)
    measurements = read_measurements(c)
    known = {m.id: m for m in measurements}
    rounds = suggested_rounds(c, measurements)
    suggestions = {x.id: x for sg in rounds.values() for x in sg}
    raw_bytes, text, copy_name = _read_once(path)
    header, header_line, records = csv_records(path, text)
    if len(c.objectives) > 1:
        if value_column != "value":
            raise CampaignError(f"--value-column: this campaign measures {', '.join(c.objectives)}; its "
                                f"results file needs one column per objective, named so")
        value_columns = c.objectives
    else:
        label = c.meta["start"].get("label_column")
        if value_column == "value" and "value" not in header and isinstance(label, str) and label in header:
            value_column = label  # the results name the value as the start data did
        value_columns = [value_column]
    if id_column in value_columns:
        raise CampaignError(f"--id-column and the value column(s) must differ, both are {id_column!r}")
    col = require_columns(path, header, header_line, [id_column, *value_columns])
    # Checked only when present, under its name at init or as `sequence` (in any case: `Sequence` too),
    # but then it must be one column: a second one would go unchecked.
    sequence_names = {"sequence", str(c.meta["start"].get("sequence_column") or "sequence").lower()}
    named = [h for h in header if h.lower() in sequence_names and h not in col]
    if len(named) > 1:
        raise DataError(path, f"columns {named} all look like the sequence; keep one", header_line)
    seq_col = header.index(named[0]) if named else None
    if not records:
        raise DataError(path, "no data rows after the header")

    upper = c.alphabet.letters.isupper()

    def norm(seq: str) -> str:  # as the readers do: strip, upper-case for an upper-case alphabet
        return seq.strip().upper() if upper else seq.strip()

    problems = Problems(path, "row")
    # Rows of one id are replicate wells: their values are merged below, once every row is checked.
    replicates: dict[str, list[tuple[int, tuple[float, ...]]]] = {}
    for line, fields in records:
        if len(fields) != len(header):
            problems.add(line, malformed_row(len(fields), len(header)))
            continue
        ident = fields[col[id_column]].strip()
        parsed = [parse_number(fields[col[v]].strip(), "value", allow_neg_inf=True) for v in value_columns]
        for v, name in zip(parsed, value_columns, strict=True):
            if isinstance(v, str):
                problems.add(line, v, name)
        if not ident:
            problems.add(line, "empty id", id_column)
            continue
        sugg = suggestions.get(ident)
        if sugg is None:
            m = SUGGESTION_ID.match(ident)
            if m and int(m.group(1)) == interrupted_round(c, rounds):
                problems.add(line, f"id {ident!r} is from round {int(m.group(1))}, whose `mbo-campaign "
                                   f"suggest` was interrupted before its plate was recorded: run it again "
                                   f"(the same command gives the same plate), then ingest", id_column)
            elif m and int(m.group(1)) not in rounds:
                so_far = (f"rounds 0-{len(rounds) - 1} were" if len(rounds) > 1 else
                          "round 0 was" if rounds else "no round was")
                problems.add(line, f"id {ident!r} is from round {int(m.group(1))}, which was never suggested "
                                   f"({so_far} suggested so far)", id_column)
            elif ident in known:
                problems.add(line, f"id {ident!r} is a starting measurement, not a suggestion", id_column)
            else:
                problems.add(line, f"unknown id {ident!r}: not in any round's suggestions.csv", id_column)
            continue
        if seq_col is not None and norm(fields[seq_col]) != sugg.sequence:
            problems.add(line, f"sequence {fields[seq_col].strip()!r} is not the sequence suggested as "
                               f"{ident!r} ({sugg.sequence})", header[seq_col])
        if any(isinstance(v, str) for v in parsed):
            continue
        replicates.setdefault(ident, []).append((line, tuple(parsed)))
    problems.raise_first()

    new: list[tuple[Suggestion, tuple[float, ...]]] = []
    already = n_replicated = n_failed_wells = 0
    for ident, rows in replicates.items():
        values, failed = merge_replicate_values([v for _, v in rows])
        n_replicated += len(rows) > 1
        n_failed_wells += failed
        if ident in known:
            if not _same_values(known[ident].values, values):
                said = lambda vs: "/".join(map(_format_value, vs))  # noqa: E731
                kept = len(rows) - failed  # the failed wells beside measured ones are not in the mean
                merged = (f" (the mean of its {kept} measured rows of {len(rows)})" if failed else
                          f" (the mean of its {len(rows)} rows)" if len(rows) > 1 else "")
                differs = next(j for j, (a, b) in enumerate(zip(known[ident].values, values, strict=True))
                               if not _same_values((a,), (b,)))
                problems.add(rows[0][0], f"conflict: {ident!r} was already ingested with value "
                                         f"{said(known[ident].values)} (from {known[ident].source}); "
                                         f"this file says {said(values)}{merged}", value_columns[differs])
            else:
                already += 1
            continue
        new.append((suggestions[ident], values))
    problems.raise_first()

    if not new:
        return f"nothing to do: all {already} results in {path} were already ingested with the same values"
    sources = {r: _store_copy(c.round_dir(r) / "results", copy_name, raw_bytes)
               for r in sorted({s.round for s, _ in new})}
    added = [Measurement(s.id, s.sequence, v, s.round, sources[s.round]) for s, v in new]
    write_measurements(c, measurements + added)
    infeasible = sum(not all(map(math.isfinite, v)) for _, v in new)
    # A row with -inf in one objective is a failed well, stored as -inf in all: say so where it hid a value.
    partly = sum(not all(map(math.isfinite, v))
                 and any(math.isfinite(x) for _, row in replicates[s.id] for x in row) for s, v in new)
    per_round = ", ".join(
        f"round {r}: {sum(m.round == r for m in measurements + added)}/{len(rounds[r])} measured"
        for r in sources)
    replicated = (f"; {plural(n_replicated, 'id')} measured in replicate, their rows averaged"
                  + (f" ({plural(n_failed_wells, '-inf row')} of otherwise measured ids left out)"
                     if n_failed_wells else "")) if n_replicated else ""
    failed_whole = (f"; {plural(partly, 'id')} with -inf in one objective stored as failed (-inf) in every "
                    f"objective") if partly else ""
    return (f"ingested {len(new)} results from {path} ({infeasible} infeasible/failed"
            + (f", {already} already ingested" if already else "") + f"){failed_whole}{replicated}; "
            + per_round)


def _same_values(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether two measurements of an id agree: to 1e-9 relative, since a value read back from a file a
    spreadsheet re-saved (0.3 for 0.30000000000000004, a mean of replicates) is the same measurement."""
    return all(x == y or math.isclose(x, y, rel_tol=1e-9) for x, y in zip(a, b, strict=True))


def merge_replicate_values(rows: list[tuple[float, ...]]) -> tuple[tuple[float, ...], int]:
    """One value per objective from an id's replicate rows, and how many failed rows were left out.

    A row with -inf in any objective is a failed well: it is left out whole, and each objective's
    value is the mean of the other rows; every objective is -inf when every row failed. A well that
    failed beside replicates that were measured says the well failed, not the design (taken column by
    column, a row failed in kd and one failed in expression made a measurement neither well gave)."""
    measured = [row for row in rows if all(map(math.isfinite, row))]
    if not measured:
        return tuple(-math.inf for _ in rows[0]), 0
    # In decimal, from each value's shortest text: 0.2 and 0.4 as a lab wrote them average to 0.3 in
    # measurements.csv, not to the 0.30000000000000004 of binary sums.
    merged = tuple(float(sum(Decimal(repr(v)) for v in column) / len(measured))
                   for column in zip(*measured, strict=True))
    return merged, len(rows) - len(measured)


# ---------------------------------------------------------------------------------------- status
def round_table(c: Campaign) -> list[dict]:
    """One dict per round (the start data first): counts, feasibility, best values, predictions.

    With several objectives: the best of each objective per round, and after each round the number
    of measured designs on the Pareto front and its hypervolume (corner: the start data's worst value
    of each objective)."""
    measurements = read_measurements(c)
    rounds = suggested_rounds(c, measurements)
    if len(c.objectives) > 1:
        return _pareto_table(c, measurements, rounds)
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


def _feasible_values(ms: list[Measurement], k: int) -> torch.Tensor:
    """``(n, k)`` values of the measurements finite in all ``k`` objectives (n may be 0)."""
    rows = [m.values for m in ms if all(map(math.isfinite, m.values))]
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), k)


def _pareto_table(c: Campaign, measurements: list[Measurement], rounds: dict) -> list[dict]:
    start = _feasible_values([m for m in measurements if m.round < 0], len(c.objectives))
    ref = start.min(0).values
    rows, so_far = [], []
    for r in [-1, *rounds]:
        ms = [m for m in measurements if m.round == r]
        so_far += ms
        y, front = _feasible_values(ms, len(c.objectives)), _feasible_values(so_far, len(c.objectives))
        row = {"round": "start" if r < 0 else str(r), "suggested": len(rounds[r]) if r >= 0 else None,
               "measured": len(ms), "feasible": len(y) / len(ms) if ms else None}
        for j, o in enumerate(c.objectives):
            row[f"best_{o}"] = float(y[:, j].max()) if len(y) else None
        row["on_front"] = int(pareto_mask(front).sum()) if len(front) else 0
        row["hypervolume"] = hypervolume(front, ref) if len(front) else None
        rows.append(row)
    return rows


def _table_text(rows: list[dict]) -> str:
    heads = list(rows[0])
    columns = [formatted([row[h] for row in rows], missing="-")
               if any(isinstance(row[h], float) for row in rows)
               else ["-" if row[h] is None else str(row[h]) for row in rows]
               for h in heads]
    cells = [heads] + [[column[i] for column in columns] for i in range(len(rows))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(heads))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells)


def _plot(c: Campaign, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ms = read_measurements(c)
    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if len(c.objectives) > 1:
        _plot_front(c, ms, ax)
    else:
        _plot_progress(c, ms, ax)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _plot_progress(c: Campaign, ms: list[Measurement], ax) -> None:
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
            labelled = any(t.get_label().startswith("infeasible") for t in ax.collections)
            ax.scatter(xs[sel & ~finite], np.full((sel & ~finite).sum(), low), marker="x", color="k", s=14,
                       label=None if labelled else "infeasible / failed (drawn at the lowest value)")
    ok = np.isfinite(best)
    ax.step(xs[ok], best[ok], where="post", color="k", lw=1.5, label="best so far")
    ax.axvline(n_start + 0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("number of measurements (x: infeasible / failed)")
    ax.set_ylabel("measured value")
    ax.set_title(f"{c.dir.name}: {plural(len(ms) - n_start, 'measurement')} in "
                 f"{plural(len({m.round for m in ms}) - 1, 'round')}")
    ax.legend(fontsize=7, loc="best")


def _plot_front(c: Campaign, ms: list[Measurement], ax) -> None:
    """The first two objectives: measured designs by round, the measured front, and the latest plate's
    predictions (hollow) where it has no results yet."""
    a, b = c.objectives[:2]
    for r in sorted({m.round for m in ms}):
        y = _feasible_values([m for m in ms if m.round == r], len(c.objectives))
        ax.scatter(y[:, 0], y[:, 1], s=12, alpha=0.8, label="start data" if r < 0 else f"round {r}")
    y = _feasible_values(ms, len(c.objectives))[:, :2]
    front = y[pareto_mask(y)]  # in the plane shown: with three objectives the full front is no staircase
    front = front[front[:, 0].argsort()]
    ax.step(front[:, 0], front[:, 1], where="pre", color="k", lw=1.5,
            label="measured front" + (f" of {a}, {b}" if len(c.objectives) > 2 else ""))
    rounds = suggested_rounds(c, ms)
    measured = {m.id for m in ms}
    waiting = [s for sg in rounds.values() for s in sg if s.id not in measured]
    if waiting:
        ax.scatter([s.predicted_means[0] for s in waiting], [s.predicted_means[1] for s in waiting], s=18,
                   facecolors="none", edgecolors="k", label="suggested, predicted")
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    more = f" (first 2 of {len(c.objectives)} objectives)" if len(c.objectives) > 2 else ""
    ax.set_title(f"{c.dir.name}: Pareto front of the measurements{more}")
    ax.legend(fontsize=7, loc="best")


def status(c: Campaign) -> str:
    """The per-round table, and ``DIR/status.png``: the measurements by round and the best so far, or
    with several objectives their Pareto front and the open plates' predictions."""
    rows = round_table(c)
    try:
        _plot(c, c.dir / "status.png")
        plot = f"plot: {c.dir / 'status.png'}"
    except OSError as err:  # an archived, read-only campaign can still be read
        plot = f"no plot ({err.strerror or err})"
    outstanding = sum((row["suggested"] or 0) - row["measured"] for row in rows[1:])
    cut = interrupted_round(c, suggested_rounds(c))
    left = [] if cut is None else plate_files(c, cut)
    unfinished = ([] if cut is None else
                  [f"round {cut}: `mbo-campaign suggest` was interrupted before its plate was recorded; "
                   f"{' and '.join(left)} {'is' if len(left) == 1 else 'are'} not final: run suggest again"])
    trace = [f"round {r}: `{p.get('command', '?')}`, seed {p.get('seed', '?')}, model sha256 "
             f"{p.get('model_sha256', '?')[:16]}, reference sha256 {p.get('reference_sha256', '?')[:16]}"
             for r in range(len(rows) - 1) if (p := plate_provenance(c, r))]
    return "\n".join([_table_text(rows), f"{plural(sum(r['measured'] for r in rows), 'measurement')}, "
                      f"{plural(outstanding, 'suggested design')} without results; {plot}", *unfinished,
                      *(["provenance (every suggestions.csv row carries it):", *trace] if trace else [])])


# ---------------------------------------------------------------------------------------- simulate
def simulate(c: Campaign, rounds: int, batch: int, progress: bool = False, device: str | None = None) -> str:
    """Play the lab with the task's oracle until the campaign has ``rounds`` measured rounds; a round
    the lab measured in part is finished by the oracle, the lab's values kept."""
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
        measured = {m.id for m in read_measurements(c)}
        have = suggested_rounds(c)
        if r not in have:
            suggest(c, batch, progress=progress, on_device=device)
        # The oracle measures what the lab did not: a round ingested in part keeps the lab's values.
        missing = [s for s in read_suggestions(c, r) if s.id not in measured]
        if not missing:
            continue
        oracle_path = c.round_dir(r) / "oracle_results.csv"
        values = task.oracle(c.encode([s.sequence for s in missing])).tolist()
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["id", "sequence", "value"])
        w.writerows([s.id, s.sequence, _format_value(v)] for s, v in zip(missing, values, strict=True))
        data = out.getvalue().encode()
        # An interrupted run wrote the same file for the same ids; one written before the lab ingested
        # some of them is replaced, since it would contradict the lab (what of it was ingested, nothing
        # or all, is kept under results/).
        if not oracle_path.is_file() or oracle_path.read_bytes() != data:
            atomic_write_bytes(oracle_path, data, overwrite=True)
        ingest(c, oracle_path)
        row = round_table(c)[r + 1]  # rows: the start data, then rounds 0, 1, ...
        lines.append(f"round {r}: {row['measured']} measured, feasible {row['feasible']:.2f}, best "
                     f"{_fmt(row['best_round'])}, best so far {_fmt(row['best_so_far'])}")
    if not lines:
        return f"nothing to do: {c.dir} already has {rounds} or more ingested rounds"
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return formatted([v], missing="-")[0]
