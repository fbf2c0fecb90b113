"""The campaign directory on disk: its files, their validation, their checksums and the writer's lock.

Layout (everything human-readable except the checkpoints)::

    DIR/campaign.json              format, created, alphabet, length, seed, start data / corpus / task
                                   spec, all settings; written once by init
    DIR/checksums.json             sha256 of campaign.json, every checkpoint and every suggestions.csv,
                                   recorded when mbo-campaign writes them and checked when it reads them
    DIR/pretrained.safetensors     the pretrained model (round 0's reference)
    DIR/measurements.csv           id,sequence,value,round,source: every measurement, start data as
                                   round -1; value -inf = measured infeasible / failed. Replaced
                                   atomically, whole. With several objectives (campaign.json's
                                   ``objectives``) one column per objective, by name, replaces value.
    DIR/round_XXX/model.safetensors   θ_i (round i+1's reference with ``seiko.kl_to: previous``)
    DIR/round_XXX/suggestions.csv     id,sequence,predicted_mean,predicted_std,acquisition; ids
                                      rXXX_NNNN, issued once and never again for another sequence
                                      (several objectives: predicted_mean_NAME, predicted_std_NAME)
    DIR/round_XXX/results/         a byte copy of every results file ingested for the round
    DIR/status.png                 written by ``status`` (several objectives: the Pareto front)
    DIR/.lock                      the writers' lock

Writers (init, suggest, ingest, simulate) hold the lock; readers (status) do not need it, because
every file is replaced by an atomic rename. A ``suggestions.csv`` is written last in a round and its
checksum recorded after it: a round whose plate has no recorded checksum was interrupted, and the next
``suggest`` redoes it (same seeds, same plate). Once recorded, a plate may not disappear or change.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from mbo.atomic import atomic_path, atomic_write_text
from mbo.checkpoint import file_sha256, save_checkpoint
from mbo.constraints import Constraints, constraints_from_settings
from mbo.data.alphabet import Alphabet
from mbo.data.dataset import SequenceDataset
from mbo.data.io import (
    DataError,
    Problems,
    csv_records,
    malformed_row,
    parse_number,
    read_text,
    require_columns,
    write_csv,
)
from mbo.diffusion import MaskedDiffusion
from mbo.diffusion.policy import Compose
from mbo.diffusion.pretrain import load_diffusion

FORMAT = "mbo-campaign/2"
SUGGESTION_COLUMNS = ["id", "sequence", "predicted_mean", "predicted_std", "acquisition"]
RESERVED = {"id", "sequence", "round", "source", "acquisition"}
"""Column names an objective may not have (they are the campaign files' own)."""
SUGGESTION_ID = re.compile(r"^r(\d{3,})_(\d{4,})$")
CHECKSUMS = "checksums.json"
# Suffix of the key under which a plate's (id, sequence) digest is recorded beside its file's sha256.
DIGEST = "#ids"
LOCK = ".lock"
SAFETENSORS_TMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")


class CampaignError(Exception):
    """A user error that is not about one data file (wrong state, bad setting): exit status 2."""


@dataclass(frozen=True)
class Measurement:
    id: str
    sequence: str
    values: tuple[float, ...]  # one per objective
    round: int
    source: str
    # Columns a user added to measurements.csv (notes, plate positions): kept, never read.
    extra: tuple[tuple[str, str], ...] = ()
    # Its row in measurements.csv (None for a measurement not yet written), to name it in errors.
    line: int | None = field(default=None, compare=False)

    @property
    def value(self) -> float:
        """The first objective's value (the only one of a single-objective campaign)."""
        return self.values[0]


@dataclass(frozen=True)
class Suggestion:
    id: str
    sequence: str
    predicted_means: tuple[float, ...]  # one per objective
    predicted_stds: tuple[float, ...]
    acquisition: float
    round: int

    @property
    def predicted_mean(self) -> float:
        return self.predicted_means[0]


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
    def settings(self) -> DictConfig:
        return OmegaConf.create(self.meta["settings"])

    @property
    def objectives(self) -> list[str]:
        """The measured properties: ``["value"]``, or the label columns' names of a campaign started
        with several (``--label-column kd,expression``)."""
        return list(self.meta.get("objectives", ["value"]))

    @property
    def measurement_columns(self) -> list[str]:
        return ["id", "sequence", *self.objectives, "round", "source"]

    @property
    def suggestion_columns(self) -> list[str]:
        if len(self.objectives) == 1:
            return SUGGESTION_COLUMNS
        return ["id", "sequence", *[f"predicted_{k}_{o}" for o in self.objectives for k in ("mean", "std")],
                "acquisition"]

    @property
    def constraints(self) -> Constraints:
        """The rules every suggested design meets (checked at ``init``)."""
        return constraints_from_settings(self.settings.get("constraints"), self.alphabet, self.length)

    @property
    def measurements_path(self) -> Path:
        return self.dir / "measurements.csv"

    def round_dir(self, r: int) -> Path:
        return self.dir / f"round_{r:03d}"

    def encode(self, seqs: list[str]) -> torch.Tensor:
        return self.alphabet.encode_batch(seqs).reshape(len(seqs), self.length)


# ---------------------------------------------------------------------------------------- campaign.json
def _check_meta(meta, path: Path) -> None:
    """The shape of ``campaign.json``; every problem names the file and the key."""
    if not isinstance(meta, dict):
        raise CampaignError(f"{path}: must hold a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        found = meta.get("format")
        if isinstance(found, str) and found.startswith("mbo-campaign/"):
            raise CampaignError(f"{path}: made by another version of mbo-campaign (format {found}, this one "
                                f"reads {FORMAT}); start a new campaign with its measurements.csv as --data")
        raise CampaignError(f"{path}: not an {FORMAT} campaign (format {found!r})")

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise CampaignError(f"{path}: key {key!r} {what} (was the file edited?)")

    for key, kind in (("created", str), ("alphabet", dict), ("length", int), ("seed", int),
                      ("start", dict), ("settings", dict), ("overrides", list)):
        need(key in meta, key, "is missing")
        need(isinstance(meta[key], kind) and not isinstance(meta[key], bool), key,
             f"must be {'an object' if kind is dict else 'a ' + kind.__name__}")
    a = meta["alphabet"]
    need(isinstance(a.get("name"), str), "alphabet.name", "must be a string")
    letters = a.get("letters")
    need(isinstance(letters, str) and len(letters) >= 2 and len(set(letters)) == len(letters),
         "alphabet.letters", "must be a string of at least 2 distinct letters")
    need(meta["length"] >= 1, "length", "must be >= 1")
    need(all(isinstance(o, str) for o in meta["overrides"]), "overrides", "must be a list of strings")
    if "objectives" in meta:
        obj = meta["objectives"]
        need(isinstance(obj, list) and len(obj) >= 2 and all(isinstance(o, str) and o for o in obj)
             and len(set(obj)) == len(obj) and not set(obj) & RESERVED, "objectives",
             f"must be a list of 2 or more distinct names, none of {sorted(RESERVED)}")


def open_campaign(directory: str | os.PathLike) -> Campaign:
    """Read and check ``DIR/campaign.json`` (its schema and its recorded checksum)."""
    from mbo.active.campaign.settings import check_stored_settings

    d = Path(directory)
    path = d / "campaign.json"
    if d.is_file():
        raise CampaignError(f"{d}: a file, not a campaign directory (DIR is the folder `mbo-campaign init` "
                            "made)")
    if not d.is_dir():
        raise CampaignError(f"{d}: no such campaign directory (create one with `mbo-campaign init`)")
    if not path.is_file():
        raise CampaignError(f"{d}: not a campaign directory (no campaign.json)")
    meta = _read_json(path)
    _check_meta(meta, path)
    c = Campaign(d, meta)
    verify(c, "campaign.json")
    meta["settings"] = check_stored_settings(meta["settings"], meta["overrides"], path)
    return c


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CampaignError(f"{path}: not valid JSON ({err})") from None


# ---------------------------------------------------------------------------------------- checksums
def checksums(directory: Path) -> dict[str, str]:
    """The recorded ``relative path -> sha256`` of the campaign's files."""
    path = directory / CHECKSUMS
    if not path.is_file():
        raise CampaignError(f"{path}: missing (was it deleted?); it records the campaign's files")
    data = _read_json(path)
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and
                                             re.fullmatch(r"[0-9a-f]{64}", v) for k, v in data.items()):
        raise CampaignError(f"{path}: must map file names to sha256 digests (was it edited?)")
    return data


def record(directory: Path, *names: str, digests: dict[str, str] | None = None) -> None:
    """Record the current sha256 of each file ``names`` (relative to ``directory``), and ``digests``
    (key -> sha256) as given, in one atomic write."""
    path = directory / CHECKSUMS
    data = checksums(directory) if path.exists() else {}
    for name in names:
        data[name] = file_sha256(directory / name)
    data.update(digests or {})
    atomic_write_text(path, json.dumps(dict(sorted(data.items())), indent=1) + "\n", overwrite=True)


def verify(c: Campaign, name: str) -> Path:
    """``DIR/name``, after checking it against its recorded checksum.

    Raises:
        CampaignError: naming the file: it is missing, was changed since mbo-campaign wrote it, or was
            never recorded.
    """
    path = c.dir / name
    want = checksums(c.dir).get(name)
    if want is None:
        raise CampaignError(f"{path}: not recorded in {CHECKSUMS}; mbo-campaign did not write it")
    if not path.is_file():
        raise CampaignError(f"{path}: missing; restore it from a backup (sha256 {want})")
    if file_sha256(path) != want:
        raise CampaignError(f"{path}: changed since mbo-campaign wrote it (its sha256 differs from the one "
                            f"recorded in {CHECKSUMS}); restore the original from a backup")
    return path


# ---------------------------------------------------------------------------------------- lock, cleanup
@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """The writers' lock on a campaign (an OS lock, released if the holder dies); stale temporary files
    of killed writers are removed once it is held."""
    lock = FileLock(directory / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise CampaignError(f"{directory}: another mbo-campaign command is working on this campaign; "
                            f"wait for it to finish") from None
    try:
        remove_stale_files(directory)
        yield
    finally:
        lock.release()


def remove_stale_files(directory: Path) -> None:
    """Temporary files of writers killed mid-write (the caller holds the lock: none is live), and
    directories of killed ``init`` runs of this campaign whose process is gone."""
    for folder in [directory, *directory.glob("round_*"), *directory.glob("round_*/results")]:
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        # safetensors writes a checkpoint to .tmpXXXXXX beside it first (then renames it into our own
        # temporary file): a writer killed then leaves a whole model there.
        for stale in folder.glob(".tmp*"):
            if SAFETENSORS_TMP.fullmatch(stale.name) and stale.is_file():
                stale.unlink(missing_ok=True)
    here = Path(os.path.abspath(directory))  # `.` has no parent or name of its own
    for staged in here.parent.glob(f".{here.name}.init-*"):
        m = re.match(rf"\.{re.escape(here.name)}\.init-(\d+)-", staged.name)
        if m and staged.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(staged, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------- models
def save_model(c: Campaign, name: str, model: MaskedDiffusion) -> None:
    """Write a checkpoint ``DIR/name`` and record its checksum (replacing an interrupted round's)."""
    save_checkpoint(c.dir / name, model, overwrite=True)
    record(c.dir, name)


def load_model(c: Campaign, name: str, device: torch.device) -> MaskedDiffusion:
    """The checkpoint ``DIR/name``, checked against its recorded checksum first."""
    path = verify(c, name)
    model = load_diffusion(path, c.settings.diffusion, device=device, vocab_size=c.alphabet.size,
                           length=c.length)
    # The per-position constraints too, before min-p: every round samples, fine-tunes and measures its
    # KL under the constrained policy.
    model.policy = Compose(c.constraints.policy(), model.policy)
    return model


# ---------------------------------------------------------------------------------------- measurements
def read_measurements(c: Campaign) -> list[Measurement]:
    """Every row of ``measurements.csv``, checked (it may have been edited by hand)."""
    path = c.measurements_path
    header, header_line, records = csv_records(path, read_text(path))
    # Columns are kept by name when the file is rewritten: of two of one name, only one would survive.
    twice = next((name for name in header if header.count(name) > 1), None)
    if twice is not None:
        what = f"column {twice!r}" if twice else "an unnamed column (an empty header cell)"
        raise DataError(path, f"{what} appears more than once in the header; give each column its own "
                              f"name (the next write of this file would keep only one of them)", header_line)
    col = require_columns(path, header, header_line, c.measurement_columns)
    problems = Problems(path, "row")
    out: list[Measurement] = []
    seen: dict[str, int] = {}
    for line, fields in records:
        if len(fields) != len(header):
            problems.add(line, malformed_row(len(fields), len(header)))
            continue
        get = {name: fields[i].strip() for name, i in col.items()}
        if not get["id"]:
            problems.add(line, "empty id", "id")
        elif get["id"] in seen:
            problems.add(line, f"id {get['id']!r} is also used in row {seen[get['id']]}", "id")
        seen.setdefault(get["id"], line)
        seq = get["sequence"]
        if c.alphabet.unknown_letters(seq) or len(seq) != c.length:
            # init and ingest read lowercase letters as capitals; this file keeps the campaign's own.
            case = (f" (write it in capitals: {seq.upper()!r})"
                    if len(seq) == c.length and not c.alphabet.unknown_letters(seq.upper()) else "")
            problems.add(line, f"sequence {seq!r} is not a length-{c.length} sequence of "
                               f"{c.alphabet.letters}{case}", "sequence")
        values = [parse_number(get[o], o, allow_neg_inf=True) for o in c.objectives]
        for o, v in zip(c.objectives, values, strict=True):
            if isinstance(v, str):
                problems.add(line, v, o)
        try:
            rnd = int(get["round"])
        except ValueError:
            problems.add(line, f"round {get['round']!r} is not an integer", "round")
            continue
        if rnd < 0 and SUGGESTION_ID.match(get["id"]):
            # Issued to a plate later, the id would name two sequences and block that measurement.
            problems.add(line, f"id {get['id']!r} looks like a suggestion id (rNNN_NNNN), which mbo-campaign "
                               f"reserves for its own plates; rename it (e.g. 'own_{get['id']}')", "id")
        if all(isinstance(v, float) for v in values):
            extra = tuple((h, fields[i]) for i, h in enumerate(header) if i not in col.values())
            out.append(Measurement(get["id"], seq, tuple(values), rnd, get["source"], extra, line))
    problems.raise_first()
    return out


def format_value(value: float) -> str:
    return repr(float(value))


def write_measurements(c: Campaign, rows: list[Measurement], overwrite: bool = True) -> None:
    """Replace ``measurements.csv`` with ``rows`` in one atomic rename; columns a user added come
    after the campaign's own, empty in rows that have none."""
    added = list(dict.fromkeys(name for m in rows for name, _ in m.extra))
    with atomic_path(c.measurements_path, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow([*c.measurement_columns, *added])
            for m in rows:
                extra = dict(m.extra)
                w.writerow([m.id, m.sequence, *map(format_value, m.values), m.round, m.source,
                            *(extra.get(name, "") for name in added)])
    fsync_dir(c.dir)


# ---------------------------------------------------------------------------------------- suggestions
def round_numbers(c: Campaign) -> list[int]:
    """Every ``round_XXX`` directory's number, sorted."""
    out = []
    for p in c.dir.iterdir():
        m = re.fullmatch(r"round_(\d{3,})", p.name)
        if m and p.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


def _plate_name(r: int) -> str:
    return f"round_{r:03d}/suggestions.csv"


def _plate_digest(pairs: list[tuple[str, str]]) -> str:
    """sha256 of a plate's (id, sequence) pairs: what its ids mean, which a spreadsheet's re-save (a
    BOM, CRLF, numbers reformatted) keeps while it changes the file's bytes."""
    return hashlib.sha256("".join(f"{i},{s}\n" for i, s in pairs).encode()).hexdigest()


def verify_plate(c: Campaign, r: int) -> Path:
    """Round ``r``'s ``suggestions.csv``, checked: its bytes as recorded, or, for a plate recorded
    with its (id, sequence) digest, the same ids naming the same sequences, in the order
    written or sorted otherwise (a spreadsheet's sort by predicted mean or well).

    Raises:
        CampaignError: missing, or changed in its ids or sequences (or in its bytes, for plates
            recorded before the digest).
    """
    name = _plate_name(r)
    try:
        return verify(c, name)
    except CampaignError as err:
        path, want = c.dir / name, checksums(c.dir).get(name + DIGEST)
        if want is None or not path.is_file():
            raise
        try:
            header, header_line, records = csv_records(path, read_text(path))
            col = require_columns(path, header, header_line, ["id", "sequence"])
            pairs = [(f[col["id"]].strip(), f[col["sequence"]].strip()) for _, f in records]
        except (DataError, IndexError):
            raise err from None
        if want not in (_plate_digest(pairs), _plate_digest(_in_issued_order(pairs))):
            raise CampaignError(f"{path}: its ids or sequences changed since mbo-campaign wrote it (an id "
                                "names one sequence forever); restore the original from a backup") from None
        return path


def _in_issued_order(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A plate's (id, sequence) pairs in the order their ids were issued (rXXX_0000, rXXX_0001, ...),
    which is the order the plate was written in: a plate sorted in a spreadsheet (by predicted mean,
    by well) still names the same sequences. Pairs whose id is not a suggestion id keep their place
    at the end (the digest then differs, as it should)."""
    def key(pair: tuple[str, str]) -> tuple[int, int]:
        m = SUGGESTION_ID.match(pair[0])
        return (0, int(m.group(2))) if m else (1, 0)

    return sorted(pairs, key=key)


def read_suggestions(c: Campaign, r: int) -> list[Suggestion] | None:
    """Round ``r``'s plate, or ``None`` if it has none (never suggested, or interrupted before its
    checksum was recorded); a recorded plate that is missing or changed is an error."""
    if _plate_name(r) not in checksums(c.dir):
        return None
    path = verify_plate(c, r)
    header, header_line, records = csv_records(path, read_text(path))
    col = require_columns(path, header, header_line, c.suggestion_columns)
    names = ([("predicted_mean", "predicted_std")] if len(c.objectives) == 1 else
             [(f"predicted_mean_{o}", f"predicted_std_{o}") for o in c.objectives])
    out = []
    for line, fields in records:
        try:
            get = {key: fields[i].strip() for key, i in col.items()}
            out.append(Suggestion(get["id"], get["sequence"], tuple(float(get[m]) for m, _ in names),
                                  tuple(float(get[s]) for _, s in names), float(get["acquisition"]), r))
        except (IndexError, ValueError):
            raise DataError(path, "not a suggestions file written by mbo-campaign (edited?)", line) from None
    return out


PROVENANCE_COLUMNS = ["round", "seed", "model_sha256", "reference_sha256", "campaign_sha256", "command"]


def plate_provenance(c: Campaign, r: int) -> dict[str, str]:
    """What made round ``r``'s plate (its provenance columns, from the first row; empty for plates
    written before they existed)."""
    path = verify_plate(c, r)
    header, _, records = csv_records(path, read_text(path))
    if not records:
        return {}
    return {k: records[0][1][header.index(k)] for k in PROVENANCE_COLUMNS if k in header}


def write_suggestions(c: Campaign, r: int, tokens: torch.Tensor, mean, std, acquisition,
                      provenance: dict | None = None) -> Path:
    """Write round ``r``'s plate (ids ``rXXX_NNNN``) and record its checksum; returns its path.
    ``mean`` and ``std`` are ``(q,)``, or ``(q, M)`` for M objectives.

    ``provenance`` (name -> value) adds one column each, the same on every row: what made the plate."""
    ids = [f"r{r:03d}_{i:04d}" for i in range(len(tokens))]
    path = c.dir / _plate_name(r)
    if len(c.objectives) == 1:
        predicted = {"predicted_mean": mean, "predicted_std": std}
    else:  # mean, std: (q, M)
        predicted = {f"predicted_{k}_{o}": v[:, j] for j, o in enumerate(c.objectives)
                     for k, v in (("mean", mean), ("std", std))}
    extra = {**predicted, "acquisition": acquisition,
             **{k: [v] * len(ids) for k, v in (provenance or {}).items()}}
    data = SequenceDataset(tokens, c.alphabet, ids=ids)
    write_csv(path, data, overwrite=True, extra_columns=extra)
    fsync_dir(path.parent)
    record(c.dir, _plate_name(r),
           digests={_plate_name(r) + DIGEST: _plate_digest(list(zip(ids, data.sequences(), strict=True)))})
    return path


def interrupted_round(c: Campaign, rounds: dict[int, list[Suggestion]]) -> int | None:
    """The round after the last recorded plate, if a ``suggest`` of it was interrupted after writing
    its ``plate_map.csv`` or ``suggestions.csv`` but before recording the plate: those files are not
    the round's plate yet (the next ``suggest`` redoes it), though they look like one."""
    r = len(rounds)
    return r if plate_files(c, r) else None


def plate_files(c: Campaign, r: int) -> list[str]:
    """Round ``r``'s ``plate_map.csv`` and ``suggestions.csv``, those on disk (relative to the campaign
    directory); of a round whose plate is not recorded, what an interrupted ``suggest`` left."""
    return [f"{c.round_dir(r).name}/{name}" for name in ("plate_map.csv", "suggestions.csv")
            if (c.round_dir(r) / name).is_file()]


def suggested_rounds(c: Campaign, measurements: list[Measurement] | None = None
                     ) -> dict[int, list[Suggestion]]:
    """Rounds that have a plate, ``0 .. n-1``, checked against the measurements.

    Raises:
        CampaignError: a gap in the rounds, or a measured id of a round whose plate is gone: an id
            names one sequence forever, so the plate must be restored, never re-suggested. Or a row of
            ``measurements.csv`` (round 0 or later) whose id, round or sequence is not its plate's
            (an edit by hand, a spreadsheet's sort of one column): it would train the reward model on
            a design that was not measured.
    """
    recorded = {int(m.group(1)) for name in checksums(c.dir)
                if (m := re.fullmatch(r"round_(\d{3,})/suggestions\.csv", name))}
    rounds = {}
    for r in sorted(set(round_numbers(c)) | recorded):
        s = read_suggestions(c, r)
        if s is not None:
            rounds[r] = s
    if sorted(rounds) != list(range(len(rounds))):
        raise CampaignError(f"{c.dir}: rounds with suggestions are {sorted(rounds)}, not "
                            f"0..{len(rounds) - 1}; was a round directory removed or renamed?")
    plates = {x.id: x for sg in rounds.values() for x in sg}
    for m in measurements if measurements is not None else read_measurements(c):
        if m.round < 0:
            continue
        where = f"{c.measurements_path}, row {m.line}" if m.line else str(c.measurements_path)
        x = plates.get(m.id)
        # Only an id the campaign issued for that round says its plate was lost; another (mine_8 under a
        # mistyped round) is a row to fix, named below.
        if x is None and m.round not in rounds and m.id.startswith(f"r{m.round:03d}_"):
            raise CampaignError(
                f"{c.dir / _plate_name(m.round)}: missing, but {c.measurements_path.name} holds results "
                f"for its ids (e.g. {m.id}); ids are never issued twice, so restore the file from a "
                f"backup rather than suggesting the round again")
        if x is None:
            raise CampaignError(
                f"{where}: id {m.id!r} of round {m.round} is on no round's suggestions.csv (rows of round "
                f"0 and later are ingested results; a measurement of your own belongs in round -1, with the "
                f"start data)")
        if x.round != m.round:
            raise CampaignError(f"{where}: id {m.id!r} was suggested in round {x.round}, but its row says "
                                f"round {m.round} (was the file edited?)")
        if x.sequence != m.sequence:
            raise CampaignError(f"{where}: id {m.id!r} has sequence {m.sequence}, but {_plate_name(x.round)} "
                                f"suggested it as {x.sequence} (was the file edited?)")
    return rounds
