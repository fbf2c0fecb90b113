"""``mbo-campaign``: a wet-lab campaign of SEIKO rounds, kept in one directory between plates.

Commands (``mbo-campaign COMMAND --help`` for the options)::

    mbo-campaign init DIR --data START.csv [--alphabet dna] [--corpus FILE] [--config F.yaml] [KEY=VAL ...]
    mbo-campaign init DIR --task ehrlich [--task-arg key=value ...]     # a benchmark with an oracle
    mbo-campaign suggest DIR --batch N [--force]      # next plate -> DIR/round_XXX/suggestions.csv
    mbo-campaign ingest DIR RESULTS.csv [--id-column id] [--value-column value]
    mbo-campaign status DIR                           # per-round table, DIR/status.png
    mbo-campaign simulate DIR --rounds R --batch N    # --task campaigns: the oracle plays the lab

Every user error is one line on stderr and exit status 2, with nothing changed on disk.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbo.active.campaign import commands
from mbo.active.campaign.store import CampaignError, locked, open_campaign
from mbo.checkpoint import CheckpointError
from mbo.cli import OneLineParser, stdout_reader_left
from mbo.config import SettingsError
from mbo.data.io import DataError
from mbo.device import DeviceError

DEVICE_HELP = ("run on this device (auto, cpu, cuda, cuda:N) instead of the campaign's `device` setting, "
               "e.g. to go on without the GPU it was begun on")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="mbo-campaign", description="Wet-lab campaigns of SEIKO rounds: "
                                "suggest a plate, ingest its measurements, repeat.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--progress", action="store_true",
                        help="show progress bars (default: only when stderr is a terminal)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    q = sub.add_parser("init", parents=[common], help="start a campaign: read the start data, pretrain",
                       description="Start a campaign in a new directory: read the measured start data, "
                                   "pretrain the diffusion model, store everything. Settings are the "
                                   "campaign config (mbo/conf/campaign.yaml) with --config FILE.yaml on top "
                                   "and Hydra overrides (e.g. reward_model=bootstrap seiko.c=2) on top of "
                                   "that.")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides of the settings")
    q.add_argument("--data", metavar="FILE.csv", help="measured start data (sequence and label columns)")
    q.add_argument("--sequence-column", default="sequence")
    q.add_argument("--label-column", default="label", help="the measured value's column, or several "
                   "comma-separated (kd,expression): plates then grow their Pareto front")
    q.add_argument("--id-column", default=None, help="column of unique ids (default: 'id' if present)")
    q.add_argument("--alphabet", default="dna", help="dna, rna, protein, or the letters (default dna)")
    q.add_argument("--corpus", metavar="FILE", help="unlabeled pretraining sequences, CSV or FASTA "
                                                    "(default: the start data's sequences)")
    q.add_argument("--task", choices=sorted(commands.TASKS), help="start from a benchmark task instead of "
                                                                   "--data")
    q.add_argument("--task-arg", action="append", metavar="KEY=VALUE", help="task argument (repeatable)")
    q.add_argument("--config", metavar="FILE.yaml", help="settings overriding the defaults (same nesting); "
                                                         "overrides on the command line win over it")
    q.add_argument("--seed", type=_seed, default=0, help="the campaign's seed, 0 to 2**32 - 1 (default 0)")

    q = sub.add_parser("suggest", parents=[common], help="run the next round, write its suggestions.csv")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--batch", type=int, required=True, metavar="N", help="designs on the plate")
    q.add_argument("--force", action="store_true", help="suggest even if the last plate has no results")
    q.add_argument("--plate", type=int, choices=[96, 384], help="also write round_XXX/plate_map.csv")
    q.add_argument("--device", help=DEVICE_HELP)

    q = sub.add_parser("ingest", parents=[common], help="add measured values from a results CSV")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("results", metavar="RESULTS.csv")
    q.add_argument("--id-column", default="id")
    q.add_argument("--value-column", default="value", help="the results' value column (a campaign with "
                   "several objectives reads one column per objective, named as at init)")

    q = sub.add_parser("status", parents=[common], help="per-round table and DIR/status.png")
    q.add_argument("dir", metavar="DIR")

    q = sub.add_parser("simulate", parents=[common], help="--task campaigns: let the oracle play the lab")
    q.add_argument("dir", metavar="DIR")
    q.add_argument("--rounds", type=int, required=True, metavar="R", help="total rounds wanted (resumes)")
    q.add_argument("--batch", type=int, required=True, metavar="N")
    q.add_argument("--device", help=DEVICE_HELP)
    return p


def _is_override(arg: str) -> bool:
    """A Hydra override left over after the options: ``key=value``, ``+key=value``, or a deletion
    ``~group`` (``~method@seiko.pool``, which the README gives), never an option (``-x``)."""
    return not arg.startswith("-") and ("=" in arg or arg.startswith("~"))


def _seed(text: str) -> int:
    """``--seed``: an integer in [0, 2**32): each round seeds torch with seed * 1000 + round, which must
    fit in 64 bits, so a larger seed would pass init and then fail every suggest."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {2**32 - 1}, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mbo-campaign``; returns the exit status (2 for every user error)."""
    parser = _parser()
    # Hydra overrides may come anywhere after `init DIR`, also after the options.
    args, extra = parser.parse_known_args(argv)
    if args.command == "init":
        args.overrides += [x for x in extra if _is_override(x)]
        extra = [x for x in extra if not _is_override(x)]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    progress = args.progress or sys.stderr.isatty()
    try:
        if args.command == "init":
            message = commands.init(
                args.dir, data=args.data, task=args.task, task_args=args.task_arg,
                sequence_column=args.sequence_column, label_column=args.label_column,
                id_column=args.id_column, alphabet=args.alphabet, corpus=args.corpus, config=args.config,
                overrides=args.overrides, seed=args.seed, progress=progress)
        elif args.command == "status":
            message = commands.status(open_campaign(args.dir))  # a reader: no lock needed
        else:
            directory = Path(args.dir)
            open_campaign(directory)
            with locked(directory):
                c = open_campaign(directory)
                if args.command == "suggest":
                    path = commands.suggest(c, args.batch, args.force, progress, args.plate, args.device)
                    message = f"wrote {path}"
                elif args.command == "ingest":
                    message = commands.ingest(c, args.results, args.id_column, args.value_column)
                else:
                    message = commands.simulate(c, args.rounds, args.batch, progress, args.device)
    except (CampaignError, DataError, CheckpointError, SettingsError, DeviceError) as err:
        print(f"mbo-campaign {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as err:  # the machine, not the input: a read-only folder, a full disk
        print(f"mbo-campaign {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # every write is atomic: nothing is left half-written
        print(f"mbo-campaign {args.command}: interrupted; no file was left half-written", file=sys.stderr)
        return 130
    try:
        print(message)
    except BrokenPipeError:  # `mbo-campaign status DIR | head`: the reader left early
        stdout_reader_left()
    return 0


if __name__ == "__main__":
    sys.exit(main())
