"""``mbo-campaign``: the round trip, ingest validation (nothing changes on a bad file), crash safety,
resuming ``simulate``. Tiny models and a tiny DNA CSV or Ehrlich task: a few seconds per campaign."""

import csv
import gzip
import hashlib
import json
import math
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys

import pytest
import torch

import mbo.active.campaign as campaign
import mbo.active.campaign.commands as commands
from mbo.diffusion import load_masked_diffusion

TINY = """\
device: cpu
diffusion:
  denoiser: {dim: 16, depth: 1, heads: 2, output_scale: 1.0}  # 30 steps cannot tame the default 300
  pretrain: {steps: 30, warmup: 30, lr: 6.0e-4, batch_size: 32}  # the default warmup's rate at each step
reward_model: {num_members: 2, conv_channels: [8], kernel_size: 3, hidden_dims: [8], epochs: 2}
finetune: {iterations: 2, batch_size: 8, states_per_trajectory: 2}
seiko:
  pool_size: 64
"""
EHRLICH = ["--task", "ehrlich"] + [f"--task-arg={a}" for a in (
    "num_states=8", "length=8", "num_motifs=1", "motif_length=2", "quantization=2", "corpus_size=300",
    "offline_size=30")]


def cli(*args) -> int:
    return campaign.main([str(a) for a in args])


def tree_hash(root) -> dict:
    """Every directory and file under ``root`` (hidden ones too) with its content hash."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel + "/"] = None
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                out[os.path.join(rel, name)] = hashlib.sha256(f.read()).hexdigest()
    return out


def read_rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_results(path, rows, header=("id", "value")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("conf") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def dna_csv(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "start.csv"
    rows = []
    for i in range(24):
        seq = "".join(rng.choice("ACGT") for _ in range(8))
        rows.append((f"s{i}", seq, f"{seq.count('G') + 0.1 * seq.count('C'):.1f}"))
    write_results(path, rows, header=("id", "sequence", "label"))
    return path


@pytest.fixture(scope="module")
def suggested(tmp_path_factory, config, dna_csv):
    """A DNA campaign with round 0 suggested (4 designs) and its first two results ingested."""
    root = tmp_path_factory.mktemp("suggested") / "camp"
    # Random 8-mers are spread, which lifts the trust region; this campaign keeps it whatever the spread,
    # the path of a wild type and its variants.
    assert cli("init", root, "--data", dna_csv, "--config", config, "seiko.max_unseen_below_spread=null") == 0
    assert cli("suggest", root, "--batch", 4) == 0
    ids = [r["id"] for r in read_rows(root / "round_000" / "suggestions.csv")]
    plate_a = write_results(root.parent / "plate_a.csv", [(ids[0], "1.5"), (ids[1], "-inf")])
    assert cli("ingest", root, plate_a) == 0
    return root, ids


@pytest.fixture
def camp(suggested, tmp_path):
    root, ids = suggested
    copy = tmp_path / "camp"
    shutil.copytree(root, copy)
    return copy, ids


def test_round_trip_csv(tmp_path, config, dna_csv, monkeypatch, capsys):
    references = []
    real = commands.seiko_round
    monkeypatch.setattr(commands, "seiko_round",
                        lambda ref, *a, **k: (references.append(ref), real(ref, *a, **k))[1])
    root = tmp_path / "camp"
    # The default leash is the pretrained model; the previous round's is the path with more to check.
    assert cli("init", root, "--data", dna_csv, "--config", config, "seiko.kl_to=previous") == 0
    # Random 8-mers: spread over the space, so the rounds have no trust region, and init says so.
    assert "so plates have no trust region" in capsys.readouterr().out
    meas = read_rows(root / "measurements.csv")
    assert list(meas[0]) == ["id", "sequence", "value", "round", "source"]
    assert len(meas) == 24 and {m["round"] for m in meas} == {"-1"} and meas[0]["source"] == "start.csv"
    assert meas[0]["id"] == "s0"

    assert cli("suggest", root, "--batch", 4) == 0
    first = (root / "round_000" / "suggestions.csv").read_bytes()
    plate = read_rows(root / "round_000" / "suggestions.csv")
    assert list(plate[0])[:5] == ["id", "sequence", "predicted_mean", "predicted_std", "acquisition"]
    assert list(plate[0])[5:] == ["round", "seed", "model_sha256", "reference_sha256", "campaign_sha256",
                                  "command"]
    assert [p["id"] for p in plate] == [f"r000_{i:04d}" for i in range(4)]
    # A crash after the model was written but before the plate's checksum was recorded: the round is
    # redone, identically.
    sums = json.loads((root / "checksums.json").read_text())
    del sums["round_000/suggestions.csv"]
    (root / "checksums.json").write_text(json.dumps(sums))
    (root / "round_000" / "suggestions.csv").unlink()
    assert cli("suggest", root, "--batch", 4) == 0
    assert (root / "round_000" / "suggestions.csv").read_bytes() == first
    assert not (root / "round_001").exists()

    results = write_results(tmp_path / "plate0.csv", [(p["id"], str(i)) for i, p in enumerate(plate)])
    assert cli("ingest", root, results) == 0
    assert (root / "round_000" / "results" / "plate0.csv").read_bytes() == results.read_bytes()
    meas = read_rows(root / "measurements.csv")
    assert len(meas) == 28 and meas[-1] == {"id": "r000_0003", "sequence": plate[3]["sequence"],
                                           "value": "3.0", "round": "0", "source": "plate0.csv"}

    capsys.readouterr()
    assert cli("status", root) == 0
    out = capsys.readouterr().out
    assert "best_so_far" in out and "start" in out and (root / "status.png").stat().st_size > 1000
    assert "None" not in out  # the start data suggested nothing: "-"

    assert cli("suggest", root, "--batch", 4) == 0
    plate1 = read_rows(root / "round_001" / "suggestions.csv")
    assert [p["id"] for p in plate1] == [f"r001_{i:04d}" for i in range(4)]
    measured = {m["sequence"] for m in meas}
    assert not measured & {p["sequence"] for p in plate1}  # never re-suggests a measured design
    # Round 0 started from the pretrained model, round 1 from round 0's fine-tuned model (kl_to: previous).
    assert len(references) == 3
    for ref, path in ((references[0], "pretrained.safetensors"),
                      (references[2], "round_000/model.safetensors")):
        stored = load_masked_diffusion(root / path).state_dict()
        assert all(torch.equal(v, stored[k]) for k, v in ref.state_dict().items())


def test_two_objectives_grow_the_pareto_front(tmp_path, config, capsys):
    # kd rewards G, expression rewards T: a trade-off. Plates are picked by qNEHVI.
    rng = random.Random(1)
    rows = []
    for i in range(24):
        seq = "".join(rng.choice("ACGT") for _ in range(8))
        rows.append((f"s{i}", seq, f"{seq.count('G') + 0.1 * i:.1f}", f"{seq.count('T') - 0.1 * i:.1f}"))
    start = write_results(tmp_path / "two.csv", rows, header=("id", "sequence", "kd", "expression"))
    root = tmp_path / "camp"
    assert cli("init", root, "--data", start, "--label-column", "kd,expression", "--config", config) == 0
    assert json.loads((root / "campaign.json").read_text())["objectives"] == ["kd", "expression"]
    meas = read_rows(root / "measurements.csv")
    assert list(meas[0]) == ["id", "sequence", "kd", "expression", "round", "source"]
    assert cli("suggest", root, "--batch", 4, "--plate", 96) == 0
    plate = read_rows(root / "round_000" / "suggestions.csv")
    assert list(plate[0])[:7] == ["id", "sequence", "predicted_mean_kd", "predicted_std_kd",
                                  "predicted_mean_expression", "predicted_std_expression", "acquisition"]
    assert len(plate) == 4 and not {p["sequence"] for p in plate} & {r[1] for r in rows}
    assert cli("status", root) == 0  # a round with no results yet has no feasible value to plot
    wells = read_rows(root / "round_000" / "plate_map.csv")  # every objective's prediction, by name
    assert list(wells[0]) == ["plate", "well", "id", "sequence", "predicted_mean_kd", "predicted_std_kd",
                              "predicted_mean_expression", "predicted_std_expression"]
    assert [float(w["predicted_mean_expression"]) for w in wells] == pytest.approx(
        [float(p["predicted_mean_expression"]) for p in plate], rel=1e-6)
    capsys.readouterr()
    # A results file needs every objective; nothing changes on a bad one.
    before = tree_hash(root)
    one = write_results(tmp_path / "one.csv", [(plate[0]["id"], "1")], header=("id", "kd"))
    assert cli("ingest", root, one) == 2
    assert "missing column(s) ['expression']" in capsys.readouterr().err and tree_hash(root) == before
    both = write_results(tmp_path / "both.csv",
                         [(p["id"], f"{5 + i}", f"{5 - i}") for i, p in enumerate(plate)],
                         header=("id", "kd", "expression"))
    assert cli("ingest", root, both) == 0
    assert read_rows(root / "measurements.csv")[-1]["expression"] == "2.0"
    capsys.readouterr()
    # A conflict names the objective that differs.
    again = write_results(tmp_path / "again.csv", [(plate[0]["id"], "5", "4")],
                          header=("id", "kd", "expression"))
    assert cli("ingest", root, again) == 2
    assert "column 'expression': conflict" in capsys.readouterr().err
    assert cli("status", root) == 0
    out = capsys.readouterr().out
    assert "best_kd" in out and "hypervolume" in out and (root / "status.png").stat().st_size > 1000
    # Every result is on the front (each beats the start data in kd); the hypervolume grew.
    table = commands.round_table(campaign.open_campaign(root))
    assert table[1]["on_front"] >= 4 and table[1]["hypervolume"] > table[0]["hypervolume"]
    assert cli("suggest", root, "--batch", 4) == 0
    assert len(read_rows(root / "round_001" / "suggestions.csv")) == 4
    # A well failed in one objective fails in both; the report says it hid a measured kd.
    first = read_rows(root / "round_001" / "suggestions.csv")[0]["id"]
    failed = write_results(tmp_path / "failed.csv", [(first, "0.5", "-inf")],
                           header=("id", "kd", "expression"))
    capsys.readouterr()
    assert cli("ingest", root, failed) == 0
    out = capsys.readouterr().out
    assert "1 id with -inf in one objective stored as failed (-inf) in every objective" in out
    assert read_rows(root / "measurements.csv")[-1]["kd"] == "-inf"
    with pytest.raises(campaign.CampaignError, match="one column per objective"):
        commands.ingest(campaign.open_campaign(root), both, value_column="kd")


@pytest.mark.parametrize("case", ["unknown_id", "replicates_conflict", "non_numeric", "empty", "nan",
                                  "plus_inf",
                                  "missing_column", "round_never_suggested", "conflict", "missing_file",
                                  "wrong_sequence", "overflow", "repeated_sequence_column", "gzip",
                                  "wrong_capitalized_sequence"])
def test_bad_ingest_changes_nothing(camp, tmp_path, capsys, case):
    root, ids = camp
    path = tmp_path / "bad.csv"
    row, column = 3, "'value'"
    if case == "unknown_id":
        write_results(path, [(ids[2], "1"), ("r000_0099", "2")])
        row, column, problem = 3, "'id'", "unknown id 'r000_0099'"
    elif case == "replicates_conflict":  # ids[0] was ingested as 1.5; its replicates here average 2
        write_results(path, [(ids[2], "1"), (ids[0], "1.5"), (ids[0], "2.5")])
        row, problem = 3, "this file says 2.0 (the mean of its 2 rows)"
    elif case == "non_numeric":
        write_results(path, [(ids[2], "1"), (ids[3], "high")])
        problem = "'high' is not a number; write -inf for a failed or infeasible design"
    elif case == "empty":
        write_results(path, [(ids[2], "1"), (ids[3], "")])
        problem = "empty value"
    elif case == "nan":
        write_results(path, [(ids[2], "1"), (ids[3], "NaN")])
        problem = "is NaN"
    elif case == "plus_inf":
        write_results(path, [(ids[2], "1"), (ids[3], "inf")])
        problem = "+inf"
    elif case == "missing_column":
        write_results(path, [(ids[2], "1")], header=("id", "measurement"))
        row, column, problem = 1, None, "missing column(s) ['value']"
    elif case == "round_never_suggested":
        write_results(path, [(ids[2], "1"), ("r004_0000", "2")])
        column, problem = "'id'", "round 4, which was never suggested"
    elif case == "conflict":
        write_results(path, [(ids[2], "1"), (ids[0], "2.5")])  # ids[0] was ingested as 1.5
        problem = "conflict"
    elif case == "overflow":  # overflows to -inf, but it is no measured infeasible design
        write_results(path, [(ids[2], "1"), (ids[3], "-1e400")])
        problem = "'-1e400' is too large"
    elif case == "repeated_sequence_column":  # the second one would go unchecked
        seq = read_rows(root / "round_000" / "suggestions.csv")[2]["sequence"]
        write_results(path, [(ids[2], "1", seq, "AAAAAAAA")], header=("id", "value", "sequence", "sequence"))
        row, column, problem = 1, None, "['sequence', 'sequence'] all look like the sequence"
    elif case == "gzip":
        path = tmp_path / "bad.csv.gz"
        path.write_bytes(gzip.compress(f"id,value\n{ids[2]},1\n".encode()))
        row, column, problem = None, None, "gzip-compressed"
    elif case == "wrong_capitalized_sequence":  # a spreadsheet's header: checked all the same
        write_results(path, [(ids[2], "AAAAAAAA", "1")], header=("id", "Sequence", "value"))
        row, column, problem = 2, "'Sequence'", "is not the sequence suggested"
    elif case == "missing_file":
        path = tmp_path / "nope.csv"
        row, column, problem = None, None, "does not exist"
    else:
        write_results(path, [(ids[2], "AAAAAAAA", "1")], header=("id", "sequence", "value"))
        row, column, problem = 2, "'sequence'", "is not the sequence suggested"
    before = tree_hash(root)
    capsys.readouterr()
    assert cli("ingest", root, path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and problem in err, err
    if row is not None:
        assert f"row {row}" in err, err
    if column is not None:
        assert f"column {column}" in err, err
    assert tree_hash(root) == before


def test_reingest_same_file_is_a_noop_and_partial_plates_add_up(camp, tmp_path, capsys):
    root, ids = camp
    results = write_results(tmp_path / "plate_b.csv", [(ids[0], "1.5"), (ids[2], "0.25")])  # ids[0]: known
    assert cli("ingest", root, results) == 0
    assert "1 results" in capsys.readouterr().out
    before = tree_hash(root)
    assert cli("ingest", root, results) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert tree_hash(root) == before
    # The same values as a spreadsheet writes them back: still the same measurements.
    resaved = write_results(tmp_path / "resaved.csv", [(ids[0], "1.5000000000000002"), (ids[2], "0.25")])
    assert cli("ingest", root, resaved) == 0
    assert "nothing to do" in capsys.readouterr().out and tree_hash(root) == before
    meas = read_rows(root / "measurements.csv")
    assert [(m["id"], m["value"], m["source"]) for m in meas[-3:]] == [
        (ids[0], "1.5", "plate_a.csv"), (ids[1], "-inf", "plate_a.csv"), (ids[2], "0.25", "plate_b.csv")]


def test_replicate_rows_are_averaged_and_a_failed_well_beside_them_left_out(camp, tmp_path, capsys):
    root, ids = camp
    results = write_results(tmp_path / "replicates.csv", [(ids[2], "1"), (ids[3], "-inf"), (ids[2], "2"),
                                                          (ids[3], "0.5")])
    assert cli("ingest", root, results) == 0
    out = capsys.readouterr().out
    assert "ingested 2 results" in out and "2 ids measured in replicate" in out and "1 -inf row of" in out
    meas = {m["id"]: m["value"] for m in read_rows(root / "measurements.csv")}
    assert (meas[ids[2]], meas[ids[3]]) == ("1.5", "0.5")
    assert commands.merge_replicate_values([(-math.inf,), (-math.inf,)]) == ((-math.inf,), 0)
    # With several objectives a well that failed in any of them is left out whole: a kd from one well
    # and an expression from another is a measurement neither gave.
    merge = commands.merge_replicate_values
    assert merge([(5.0, -math.inf), (-math.inf, 3.0)]) == ((-math.inf, -math.inf), 0)
    assert merge([(1.0, -math.inf), (3.0, 2.0)]) == ((3.0, 2.0), 1)
    assert merge([(0.8, 0.2), (0.8, 0.4)]) == ((0.8, 0.3), 0)  # the mean of the values as written
    before = tree_hash(root)
    assert cli("ingest", root, results) == 0  # the same replicates again: their mean matches
    assert "nothing to do" in capsys.readouterr().out and tree_hash(root) == before


def test_suggest_refuses_while_results_are_outstanding(tmp_path, config, dna_csv, capsys):
    root = tmp_path / "camp"
    assert cli("init", root, "--data", dna_csv, "--config", config) == 0
    assert cli("suggest", root, "--batch", 3) == 0
    before = tree_hash(root)
    capsys.readouterr()
    assert cli("suggest", root, "--batch", 3) == 2
    err = capsys.readouterr().err
    assert "round 0's 3 suggestions have no results yet" in err and "--force" in err
    assert tree_hash(root) == before
    assert cli("suggest", root, "--batch", 3, "--force") == 0
    plates = [read_rows(root / f"round_{r:03d}" / "suggestions.csv") for r in (0, 1)]
    assert not {p["sequence"] for p in plates[0]} & {p["sequence"] for p in plates[1]}


def test_interrupted_ingest_keeps_measurements(camp, tmp_path, monkeypatch):
    root, ids = camp
    old = (root / "measurements.csv").read_bytes()
    results = write_results(tmp_path / "plate_c.csv", [(ids[2], "0.5"), (ids[3], "0.75")])

    def crash(*args, **kwargs):
        raise SystemExit("killed")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", crash)  # the crash hits between validation and the replace
        with pytest.raises(SystemExit):
            cli("ingest", root, results)
    assert (root / "measurements.csv").read_bytes() == old
    assert cli("ingest", root, results) == 0
    assert [m["id"] for m in read_rows(root / "measurements.csv")][-2:] == [ids[2], ids[3]]
    # The copy kept by the interrupted attempt is reused, not duplicated.
    kept = sorted(p.name for p in (root / "round_000" / "results").iterdir())
    assert kept == ["plate_a.csv", "plate_c.csv"]


def test_results_from_a_pipe_are_kept_whole(camp, tmp_path):
    import threading

    root, ids = camp  # `mbo-campaign ingest DIR <(cat results.csv)`: a pipe can be read only once
    data = f"id,value\n{ids[2]},0.5\n".encode()
    fifo = tmp_path / "63"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(data,))
    writer.start()
    assert cli("ingest", root, fifo) == 0
    writer.join()
    assert (root / "round_000" / "results" / "results.csv").read_bytes() == data
    assert read_rows(root / "measurements.csv")[-1]["source"] == "results.csv"


def test_a_plate_map_of_an_interrupted_round_is_not_left_beside_another_plate(tmp_path, config, dna_csv,
                                                                              monkeypatch, capsys):
    root = tmp_path / "camp"
    assert cli("init", root, "--data", dna_csv, "--config", config) == 0

    def crash(*args, **kwargs):
        raise SystemExit("killed")

    with monkeypatch.context() as m:  # killed after the plate map, before the plate is recorded
        m.setattr(commands, "write_suggestions", crash)
        with pytest.raises(SystemExit):
            cli("suggest", root, "--batch", 8, "--plate", 96)
    assert (root / "round_000" / "plate_map.csv").is_file()
    capsys.readouterr()
    assert cli("status", root) == 0
    assert "round 0: `mbo-campaign suggest` was interrupted" in capsys.readouterr().out
    err = _err(capsys, "ingest", root, write_results(tmp_path / "r.csv", [("r000_0000", "1")]))
    assert "whose `mbo-campaign suggest` was interrupted" in err, err
    assert cli("suggest", root, "--batch", 4) == 0
    assert not (root / "round_000" / "plate_map.csv").exists()


def test_status_to_a_reader_that_leaves_early_is_no_error(camp):
    root, _ = camp  # `mbo-campaign status DIR | head`
    script = "import sys\nimport mbo.active.campaign as c\nsys.exit(c.main(sys.argv[1:]))\n"
    command = f"set -o pipefail; {shlex.quote(sys.executable)} -c {shlex.quote(script)} status {root} | true"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]


def killed_at(call: str, *args) -> None:
    """Run ``mbo-campaign ARGS`` in a process that is killed (SIGKILL) when it calls ``os.CALL``."""
    script = ("import os, signal, sys\nimport mbo.active.campaign as c\n"
              f"os.{call} = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
              "c.main(sys.argv[1:])\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_kill_9_during_ingest(camp, tmp_path):
    root, ids = camp
    old = (root / "measurements.csv").read_bytes()
    results = write_results(tmp_path / "plate_d.csv", [(ids[2], "0.5")])
    killed_at("replace", "ingest", root, results)
    assert (root / "measurements.csv").read_bytes() == old  # the old file, whole
    assert list(root.glob(".measurements.csv.*.tmp"))  # the new one, written, never renamed
    assert cli("ingest", root, results) == 0
    assert read_rows(root / "measurements.csv")[-1]["id"] == ids[2]
    assert [p.name for p in root.glob(".*")] == [".lock"]  # the killed writer's temporary file is gone


def test_simulate_resumes(tmp_path, config, monkeypatch, capsys):
    rounds_run = []
    real = commands.seiko_round
    monkeypatch.setattr(commands, "seiko_round",
                        lambda *a, seed, **k: (rounds_run.append(seed), real(*a, seed=seed, **k))[1])
    root = tmp_path / "camp"
    assert cli("init", root, *EHRLICH, "--config", config) == 0
    meas = read_rows(root / "measurements.csv")
    assert len(meas) == 30 and meas[0]["source"].endswith(":offline")
    assert cli("simulate", root, "--rounds", 2, "--batch", 4) == 0
    assert rounds_run == [0, 1]
    oracle = read_rows(root / "round_001" / "oracle_results.csv")
    assert [o["id"] for o in oracle] == [f"r001_{i:04d}" for i in range(4)]
    assert (root / "round_001" / "results" / "oracle_results.csv").is_file()
    # A round the lab measured in part is finished with the oracle, its measured value kept.
    assert cli("suggest", root, "--batch", 4) == 0
    assert cli("ingest", root, write_results(tmp_path / "lab.csv", [("r002_0001", "0.125")])) == 0
    assert cli("simulate", root, "--rounds", 3, "--batch", 4) == 0
    assert rounds_run == [0, 1, 2]  # only the missing round
    meas = read_rows(root / "measurements.csv")
    assert [sum(m["round"] == str(r) for m in meas) for r in range(-1, 3)] == [30, 4, 4, 4]
    assert [m["value"] for m in meas if m["id"] == "r002_0001"] == ["0.125"]
    capsys.readouterr()
    assert cli("simulate", root, "--rounds", 3, "--batch", 4) == 0
    assert "nothing to do" in capsys.readouterr().out and rounds_run == [0, 1, 2]


def test_a_second_campaign_on_the_same_corpus_loads_the_cached_prior(tmp_path, config, dna_csv):
    cache = tmp_path / "cache"
    for name in ("first", "second"):
        assert cli("init", tmp_path / name, "--data", dna_csv, "--config", config, f"cache_dir={cache}") == 0
    # One cache entry, named by its corpus (start.csv), not by either campaign.
    assert [p.name.split("-")[1] for p in cache.glob("*.safetensors")] == ["start"]
    weights = [(tmp_path / name / "pretrained.safetensors").read_bytes() for name in ("first", "second")]
    assert weights[0] == weights[1]


def test_init_errors_create_nothing(tmp_path, config, dna_csv, capsys):
    root = tmp_path / "camp"
    bad = tmp_path / "bad.csv"
    bad.write_text("sequence,label\nACGTACGT,1\nACGTACXT,2\n")
    assert cli("init", root, "--data", bad) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "row 3" in err and "'X'" in err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("finetune: {iterationz: 3}\n")
    assert cli("init", root, "--data", dna_csv, "--config", unknown) == 2
    assert "unknown setting 'finetune.iterationz'" in capsys.readouterr().err
    assert cli("init", root, *EHRLICH[:2], "--task-arg", "colours=3", "--config", config) == 2
    assert "unknown argument(s) ['colours']" in capsys.readouterr().err
    # Offline labels that are all equal (q = 1 and scores of at most 0.5: all 0) are refused before
    # pretraining, as a --data start is; a seed that is not an integer is named.
    for arg, problem in (("quantization=1", "all 30 labels are equal as float32 (0.0)"),
                         ("seed=1.5", "--task-arg seed must be an integer")):
        assert cli("init", root, *EHRLICH, "--task-arg", arg, "--config", config) == 2
        assert problem in capsys.readouterr().err
    assert cli("init", root, "--data", dna_csv, "--config", config, "seiko.local.fraction=2") == 2
    assert "'seiko.local'" in capsys.readouterr().err
    assert cli("init", root, "--data", dna_csv, "--config", config, "seiko.min_distance=9") == 2
    assert "'seiko.min_distance' (9) is more than the sequences' length (8)" in capsys.readouterr().err
    assert cli("init", root, "--data", dna_csv, "--config", config, "seiko.max_unseen=-1") == 2
    assert "line: setting 'seiko.max_unseen' must be an integer >= 0 or null" in capsys.readouterr().err
    assert cli("init", root, "--data", dna_csv, "--config", config, "seiko.max_unseen_below_spread=0") == 2
    assert "'seiko.max_unseen_below_spread' must be a number > 0 or null, got 0" in capsys.readouterr().err
    # The pool's method and the fine-tuner are checked at init, not at every suggest.
    for override, problem in (
            ("seiko.pool.alpha=0", "gradient_guidance: seiko.pool.alpha must be a finite number > 0"),
            ("seiko.pool.scale=-1", "gradient_guidance: seiko.pool.scale must be a finite number >= 0"),
            ("finetune.lr=0", "finetune_vidd: finetune.lr must be a finite number > 0"),
            ("finetune.alpha=-1", "finetune_vidd: finetune.alpha must be a finite number >= 0"),
            ("diffusion/sampler=grid diffusion.sampler.steps=0",
             "GridSampler: diffusion.sampler.steps must be an integer")):
        assert cli("init", root, "--data", dna_csv, "--config", config, *override.split()) == 2
        assert f"command line: {problem}" in capsys.readouterr().err
    # A value of the wrong type on the command line is named as the command line's, not the file's.
    for override, problem in (("seiko.c=abc", "'seiko.c' must be a number, got 'abc'"),
                              ("threads=abc", "'threads' must be an integer"),
                              ("reward_model.epochs=ten", "'reward_model.epochs' must be an integer")):
        assert cli("init", root, "--data", dna_csv, "--config", config, override) == 2
        assert f"command line: setting {problem}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "unknown.yaml"]
    root.mkdir()
    (root / "x").write_text("")
    assert cli("init", root, "--data", dna_csv, "--config", config) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert cli("status", tmp_path / "nowhere") == 2


def _err(capsys, *args) -> str:
    capsys.readouterr()
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_an_issued_id_never_names_another_sequence(camp, capsys):
    root, _ = camp
    (root / "round_000" / "suggestions.csv").unlink()  # round 0 has measurements
    for command in (("suggest", root, "--batch", 4), ("status", root)):
        err = _err(capsys, *command)
        assert "round_000/suggestions.csv" in err and "restore" in err


@pytest.mark.parametrize("edit, where, problem", [
    (lambda m: m.pop("settings"), "campaign.json", "key 'settings' is missing"),
    (lambda m: m.update(length="8"), "campaign.json", "key 'length' must be a int"),
    (lambda m: m.update(length=9), "campaign.json", "changed since mbo-campaign wrote it"),
    (lambda m: m["settings"]["seiko"].update(c="high"), "campaign.json", "changed since"),
])
def test_edited_campaign_json_is_refused_naming_it(camp, capsys, edit, where, problem):
    root, _ = camp
    meta = json.loads((root / "campaign.json").read_text())
    edit(meta)
    (root / "campaign.json").write_text(json.dumps(meta))
    before = tree_hash(root)
    err = _err(capsys, "suggest", root, "--batch", 2)
    assert str(root / where) in err and problem in err, err
    assert tree_hash(root) == before


def test_corrupt_checkpoints_and_plates_are_refused_naming_them(camp, capsys):
    root, ids = camp
    model = root / "pretrained.safetensors"  # round 1's reference (kl_to: pretrained)
    data = bytearray(model.read_bytes())
    data[-8:] = b"\x00" * 8  # tensor bytes overwritten: still a loadable file, wrong numbers
    model.write_bytes(bytes(data))
    err = _err(capsys, "suggest", root, "--batch", 2, "--force")
    assert str(model) in err and "changed since mbo-campaign wrote it" in err
    plate = root / "round_000" / "suggestions.csv"
    text = plate.read_text()
    # Re-saved by a spreadsheet (a BOM, CRLF): the same ids naming the same sequences, accepted.
    plate.write_text(text.replace("\n", "\r\n"), encoding="utf-8-sig")
    capsys.readouterr()
    assert cli("status", root) == 0
    plate.write_text("".join(text.splitlines(keepends=True)[:-1]))  # truncated: a design is gone
    err = _err(capsys, "ingest", root, write_results(root.parent / "p.csv", [(ids[2], "1")]))
    assert str(plate) in err and "its ids or sequences changed" in err
    ident, seq = text.splitlines()[1].split(",")[:2]
    other = ("A" if seq[0] != "A" else "C") + seq[1:]
    plate.write_text(text.replace(f"{ident},{seq},", f"{ident},{other},"))
    assert "its ids or sequences changed" in _err(capsys, "status", root)  # an id renamed its sequence


def test_a_plate_sorted_in_a_spreadsheet_still_names_its_designs(camp, tmp_path, capsys):
    root, ids = camp
    plate = root / "round_000" / "suggestions.csv"
    lines = plate.read_text().splitlines(keepends=True)
    by_mean = sorted(lines[1:], key=lambda row: float(row.split(",")[2]))
    assert by_mean != lines[1:]
    plate.write_text(lines[0] + "".join(by_mean))  # sorted by predicted mean: the same ids, sequences
    assert cli("status", root) == 0
    assert cli("ingest", root, write_results(tmp_path / "p.csv", [(ids[2], "0.5")])) == 0
    first, second = (row.split(",") for row in by_mean[:2])
    first[1], second[1] = second[1], first[1]  # two ids swap their sequences: refused
    plate.write_text(lines[0] + "".join(",".join(f) for f in (first, second)) + "".join(by_mean[2:]))
    assert "its ids or sequences changed" in _err(capsys, "status", root)


def test_a_plate_written_but_not_recorded_is_named_as_unfinished(tmp_path, config, dna_csv, monkeypatch,
                                                                  capsys):
    import mbo.active.campaign.store as store

    root = tmp_path / "camp"
    assert cli("init", root, "--data", dna_csv, "--config", config) == 0
    early = write_results(tmp_path / "early.csv", [("r000_0000", "1")])  # ingest before any suggest
    assert "from round 0, which was never suggested (no round was suggested so far)" in _err(
        capsys, "ingest", root, early)
    real = store.record

    def killed(directory, *names, **kwargs):  # the plate is written, the kill hits before its record
        if kwargs.get("digests"):
            raise SystemExit("killed")
        return real(directory, *names, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(store, "record", killed)
        with pytest.raises(SystemExit):
            cli("suggest", root, "--batch", 4)
    plate = read_rows(root / "round_000" / "suggestions.csv")  # looks like a plate, but is not one yet
    capsys.readouterr()
    assert cli("status", root) == 0
    assert "round 0: `mbo-campaign suggest` was interrupted" in capsys.readouterr().out
    results = write_results(tmp_path / "r.csv", [(p["id"], "1") for p in plate])
    before = tree_hash(root)
    err = _err(capsys, "ingest", root, results)
    assert "whose `mbo-campaign suggest` was interrupted" in err and "run it again" in err
    assert tree_hash(root) == before
    assert cli("suggest", root, "--batch", 4) == 0
    assert read_rows(root / "round_000" / "suggestions.csv") == plate  # the same plate, now recorded
    assert cli("ingest", root, results) == 0
    capsys.readouterr()
    assert cli("status", root) == 0 and "interrupted" not in capsys.readouterr().out


@pytest.mark.parametrize("edit, problem", [
    (lambda text, seq: text + f"mine,{'A' * len(seq)},2.0,0,bench\n",
     "row 28: id 'mine' of round 0 is on no round's suggestions.csv"),
    (lambda text, seq: text.replace(f",{seq},1.5,0,", f",{'A' * len(seq)},1.5,0,"),
     "row 26: id 'r000_0000' has sequence AAAAAAAA, but round_000/suggestions.csv suggested it as"),
    (lambda text, seq: text.replace(f",{seq},1.5,0,", f",{seq},1.5,3,"),
     "row 26: id 'r000_0000' was suggested in round 0, but its row says round 3"),
    (lambda text, seq: text + f"mine,{'A' * len(seq)},2.0,5,bench\n",  # a mistyped round: not a lost plate
     "row 28: id 'mine' of round 5 is on no round's suggestions.csv"),
    (lambda text, seq: text + f"r001_0000,{'A' * len(seq)},2.0,-1,bench\n",  # would block that suggestion
     "row 28, column 'id': id 'r001_0000' looks like a suggestion id"),
    (lambda text, seq: text + f"mine,{'a' * len(seq)},2.0,-1,bench\n",
     "row 28, column 'sequence': sequence 'aaaaaaaa' is not a length-8 sequence of ACGT (write it in "
     "capitals: 'AAAAAAAA')"),
])
def test_measurements_that_no_longer_match_their_plate_are_refused(camp, tmp_path, capsys, edit, problem):
    root, ids = camp
    seq = read_rows(root / "round_000" / "suggestions.csv")[0]["sequence"]
    meas = root / "measurements.csv"
    meas.write_text(edit(meas.read_text(), seq))  # an edit by hand, or a sort of one column
    before = tree_hash(root)
    results = write_results(tmp_path / "p.csv", [(ids[2], "0.5")])
    for command in (("status", root), ("suggest", root, "--batch", 2), ("ingest", root, results)):
        err = _err(capsys, *command)
        assert f"{meas}, {problem}" in err, err
    assert tree_hash(root) == before


def test_checkpoints_are_as_readable_as_the_other_files(camp):
    root, _ = camp  # safetensors writes 0600: a group sharing the folder could not run a round
    mode = (root / "campaign.json").stat().st_mode & 0o777
    for name in ("pretrained.safetensors", "round_000/model.safetensors"):
        assert (root / name).stat().st_mode & 0o777 == mode, name


def test_kill_9_while_keeping_a_copy_of_the_results(camp, tmp_path):
    root, ids = camp
    results = write_results(tmp_path / "plate_e.csv", [(ids[2], "0.5")])
    killed_at("link", "ingest", root, results)
    kept = root / "round_000" / "results"
    assert list(kept.glob(".plate_e.csv.*.tmp"))  # the copy, written, never linked into place
    assert cli("ingest", root, results) == 0
    assert sorted(p.name for p in kept.iterdir()) == ["plate_a.csv", "plate_e.csv"]
    hidden = write_results(tmp_path / ".late.tmp", [(ids[3], "0.25")])  # its copy must outlive the cleanup
    assert cli("ingest", root, hidden) == 0 and cli("ingest", root, results) == 0
    assert sorted(p.name for p in kept.iterdir()) == ["late.tmp", "plate_a.csv", "plate_e.csv"]
    assert read_rows(root / "measurements.csv")[-1]["source"] == "late.tmp"


def test_leftovers_of_killed_writers_are_removed_and_readers_need_no_lock(camp, capsys):
    from filelock import FileLock

    root, ids = camp
    # The last: safetensors' own temporary file, a whole model, left by a writer killed mid-save.
    stale = [root / ".measurements.csv.abc.tmp", root / "round_000" / ".suggestions.csv.x.tmp",
             root / "round_000" / ".tmpAb3dE9"]
    for p in stale:
        p.write_text("half")
    dead = root.parent / f".{root.name}.init-999999999-abc"
    dead.mkdir()
    with FileLock(root / ".lock"):  # a writer is busy: status still reads, writers are refused
        capsys.readouterr()
        assert cli("status", root) == 0
        assert "another mbo-campaign command is working" in _err(capsys, "suggest", root, "--batch", 2)
    assert cli("ingest", root, write_results(root.parent / "q.csv", [(ids[2], "0.5")])) == 0
    assert not any(p.exists() for p in stale) and not dead.exists()


def test_labels_at_any_scale_make_a_working_campaign(tmp_path, config, dna_csv):
    big = tmp_path / "big.csv"
    rows = read_rows(dna_csv)
    write_results(big, [(r["id"], r["sequence"], repr(float(r["label"]) * 1e30)) for r in rows],
                  header=("id", "sequence", "label"))
    root = tmp_path / "camp"
    assert cli("init", root, "--data", big, "--config", config) == 0
    assert cli("suggest", root, "--batch", 3) == 0
    plate = read_rows(root / "round_000" / "suggestions.csv")
    assert len(plate) == 3 and all(abs(float(p["predicted_mean"])) > 1e28 for p in plate)


def test_plates_from_guided_pools(tmp_path, config, dna_csv):
    root = tmp_path / "camp"
    assert cli("init", root, "--data", dna_csv, "--config", config, "method@seiko.pool=best_of_n",
               "seiko.pool.num_samples=2") == 0
    meta = json.loads((root / "campaign.json").read_text())
    assert meta["overrides"][0] == "method@seiko.pool=best_of_n"
    assert meta["settings"]["seiko"]["pool"]["num_samples"] == 2
    assert cli("suggest", root, "--batch", 3) == 0
    assert len(read_rows(root / "round_000" / "suggestions.csv")) == 3


def test_plate_maps_and_provenance_trace_every_design(tmp_path, config, dna_csv, capsys):
    root = tmp_path / "camp"
    assert cli("init", root, "--data", dna_csv, "--config", config) == 0
    assert cli("suggest", root, "--batch", 14, "--plate", 96) == 0
    plate = read_rows(root / "round_000" / "plate_map.csv")
    assert [p["well"] for p in plate[:2]] == ["A1", "A2"] and plate[12]["well"] == "B1"
    sugg = read_rows(root / "round_000" / "suggestions.csv")
    assert [p["id"] for p in plate] == [s["id"] for s in sugg]
    sums = json.loads((root / "checksums.json").read_text())
    assert sugg[0]["model_sha256"] == sums["round_000/model.safetensors"]
    assert sugg[0]["reference_sha256"] == sums["pretrained.safetensors"]
    assert sugg[0]["command"] == "mbo-campaign suggest camp --batch 14 --plate 96"
    capsys.readouterr()
    assert cli("status", root) == 0
    assert "round 0: `mbo-campaign suggest camp --batch 14 --plate 96`" in capsys.readouterr().out


def test_every_suggested_design_meets_the_constraints(tmp_path, config, dna_csv, capsys):
    from mbo.constraints import Constraints
    from mbo.data.alphabet import get_alphabet

    root = tmp_path / "camp"
    rules = ["constraints.fixed=TA......", "constraints.forbidden_motifs=[AATT]", "constraints.gc=[0.25,0.5]",
             "constraints.allowed={2: AC, 7: GT}"]  # read back from campaign.json with keys "2", "7"
    assert cli("init", root, "--data", dna_csv, "--config", config, *rules) == 0
    assert cli("simulate", root, "--rounds", 1, "--batch", 8) == 2  # a --data campaign has no oracle
    assert cli("suggest", root, "--batch", 8) == 0
    seqs = [r["sequence"] for r in read_rows(root / "round_000" / "suggestions.csv")]
    dna = get_alphabet("dna")
    rule = Constraints(dna, 8, fixed="TA......", forbidden_motifs=["AATT"], gc=(0.25, 0.5),
                       allowed={2: "AC", 7: "GT"})
    assert seqs and bool(rule.satisfied(dna.encode_batch(seqs).reshape(len(seqs), 8)).all())
    # Impossible rules stop init before pretraining, on one line, and leave nothing behind.
    err = _err(capsys, "init", tmp_path / "bad", "--data", dna_csv, "--config", config,
               "constraints.fixed=GGGGGGGG", "constraints.gc=[0,0.5]")
    assert "constraints" in err and not (tmp_path / "bad").exists()
    # The pretraining seed is the campaign's --seed, which would overwrite it.
    err = _err(capsys, "init", tmp_path / "bad", "--data", dna_csv, "diffusion.pretrain.seed=5")
    assert "'diffusion.pretrain.seed'" in err and "--seed" in err and not (tmp_path / "bad").exists()
    # A warmup past the last step: the learning rate would still be rising when pretraining stops.
    err = _err(capsys, "init", tmp_path / "bad", "--data", dna_csv, "--config", config,
               "diffusion.pretrain.warmup=31")
    assert "diffusion.pretrain.warmup=31 is more than diffusion.pretrain.steps=30" in err, err
    assert not (tmp_path / "bad").exists()


def test_a_campaign_begun_before_later_settings_goes_on_as_set_up():
    from omegaconf import OmegaConf

    from mbo.active.campaign import CampaignError
    from mbo.active.campaign.settings import check_stored_settings
    from mbo.config import compose_config

    # What init stored before the local share and the guided pool were settings.
    then = compose_config("campaign", ["~method@seiko.pool", "finetune.iterations=60"])
    OmegaConf.resolve(then)
    stored = OmegaConf.to_container(then)
    del stored["seiko"]["local"], stored["seiko"]["max_unseen"], stored["seiko"]["max_unseen_below_spread"]
    check_stored_settings(stored, [], "campaign.json")
    import torch

    from mbo.active.campaign.settings import round_options
    start = torch.randint(4, (10, 8), generator=torch.Generator().manual_seed(0))  # spread designs
    options = round_options(OmegaConf.create(stored), start, 4)
    assert options["max_unseen"] is None and options["local"] is None  # neither, as then
    stored["seiko"]["max_unseen"] = 2  # a campaign begun with the trust region, before the spread rule
    assert round_options(OmegaConf.create(stored), start, 4)["max_unseen"] == 2
    del stored["seiko"]["c"]  # any other missing key is still an edited file
    with pytest.raises(CampaignError, match=r"\['settings.seiko.c'\] are missing"):
        check_stored_settings(stored, [], "campaign.json")


def test_init_from_inside_its_folder_is_refused_and_rounds_run_on_another_device(
        tmp_path, config, dna_csv, capsys, monkeypatch):
    root = tmp_path / "lab"
    root.mkdir()
    monkeypatch.chdir(root)
    # Renamed into place, the campaign would leave the shell in a deleted folder: refused at once.
    assert cli("init", ".", "--data", dna_csv, "--config", config) == 2
    assert "run init from the folder above, e.g. cd ..; mbo-campaign init lab" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert cli("init", "lab", "--data", dna_csv, "--config", config) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab"]
    monkeypatch.chdir(root)
    capsys.readouterr()
    if not torch.cuda.is_available():
        assert cli("suggest", ".", "--batch", 3, "--device", "cuda") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "use --device cpu" in err and "device=" not in err
    assert cli("suggest", ".", "--batch", 3, "--device", "cpu") == 0
    assert read_rows(root / "round_000" / "suggestions.csv")[0]["command"] == (
        "mbo-campaign suggest lab --batch 3 --device cpu")


def test_a_read_only_campaign_still_shows_its_status_and_a_machine_failure_is_one_line(
        camp, capsys, monkeypatch):
    root, _ = camp

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(commands, "_plot", refuse)
    capsys.readouterr()
    assert cli("status", root) == 0
    assert "no plot (Permission denied)" in capsys.readouterr().out
    monkeypatch.setattr(commands, "read_measurements", refuse)
    assert cli("status", root) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_columns_a_user_adds_to_measurements_are_kept(camp, tmp_path, capsys):
    root, ids = camp
    path = root / "measurements.csv"
    lines = path.read_text().splitlines()
    lines[0] += ",notes"
    lines[1] += ",plate A3 re-run; contaminated?"
    lines[2:] = [line + "," for line in lines[2:]]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8-sig")  # as a spreadsheet saves it
    assert cli("ingest", root, write_results(tmp_path / "more.csv", [(ids[2], "0.7")])) == 0
    rows = read_rows(path)
    assert list(rows[0])[-1] == "notes" and rows[0]["notes"] == "plate A3 re-run; contaminated?"
    assert rows[-1]["id"] == ids[2] and rows[-1]["notes"] == "" and len(rows) == len(lines)
    # Two columns of one name (two blank headers of an export): the next write would keep only one.
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0] + ",notes", *(line + "," for line in lines[1:])]) + "\n")
    before = tree_hash(root)
    err = _err(capsys, "ingest", root, write_results(tmp_path / "more2.csv", [(ids[3], "0.2")]))
    assert f"{path}, row 1: column 'notes' appears more than once in the header" in err, err
    assert tree_hash(root) == before


def test_the_command_line_wins_over_the_settings_file(tmp_path, dna_csv, capsys):
    from mbo.active.campaign import load_settings
    from mbo.config import SettingsError

    lab = tmp_path / "lab.yaml"
    lab.write_text("seiko: {c: 2.0, acquisition: lognei}\n")
    settings = load_settings(["seiko.acquisition=thompson"], lab)
    assert settings.seiko.acquisition == "thompson" and settings.seiko.c == 2.0
    with pytest.raises(SettingsError, match=r"^command line: setting 'seiko.acquisition' must be one of"):
        load_settings(["seiko.acquisition=thompsn"], lab)
    # A refusal names the command line for what it set, though a file is given.
    two = tmp_path / "two.csv"
    two.write_text("sequence,a,b\nACGTACGT,1,2\nACGTACGA,2,1\nACGTACCA,3,3\n")
    for args, overrides in (([dna_csv], ["constraints.fixed=TA......", "constraints.gc=[0.9,1.0]"]),
                            ([dna_csv], ["seiko.min_distance=9"]),
                            ([two, "--label-column", "a,b"], ["reward_model=gp"])):
        assert cli("init", tmp_path / "camp", "--data", *args, "--config", lab, *overrides) == 2
        err = capsys.readouterr().err
        assert err.startswith("mbo-campaign init: error: command line: "), err


def test_fine_tuning_that_cannot_fit_in_memory_is_refused_at_init(tmp_path, dna_csv, capsys):
    # It was killed by the kernel with no message, in the first round that fine-tunes.
    cache = tmp_path / "cache"
    assert cli("init", tmp_path / "camp", "--data", dna_csv, f"cache_dir={cache}", "finetune.iterations=5",
               "finetune.batch_size=1000000000000") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lower finetune.batch_size to" in err, err
    assert not (tmp_path / "camp").exists() and not cache.exists()


def test_ingest_reads_the_columns_named_at_init(tmp_path, config, dna_csv, capsys):
    rows = read_rows(dna_csv)
    start = write_results(tmp_path / "named.csv", [(r["id"], r["sequence"], r["label"]) for r in rows],
                          header=("id", "seq", "kd"))
    root = tmp_path / "camp"
    assert cli("init", root, "--data", start, "--sequence-column", "seq", "--label-column", "kd",
               "--config", config) == 0
    assert cli("suggest", root, "--batch", 2) == 0
    plate = read_rows(root / "round_000" / "suggestions.csv")
    wrong = "A" * 8 if plate[0]["sequence"] != "A" * 8 else "C" * 8
    before = tree_hash(root)
    capsys.readouterr()
    bad = write_results(tmp_path / "bad.csv", [(plate[0]["id"], wrong, "0.4")], header=("id", "seq", "kd"))
    assert cli("ingest", root, bad) == 2  # the sequence is checked under the name it had at init
    err = capsys.readouterr().err
    assert "column 'seq'" in err and "is not the sequence suggested" in err and tree_hash(root) == before
    good = write_results(tmp_path / "good.csv", [(plate[0]["id"], plate[0]["sequence"], "0.4")],
                         header=("id", "seq", "kd"))
    assert cli("ingest", root, good) == 0  # and the value under the label's name: no --value-column
    assert read_rows(root / "measurements.csv")[-1]["value"] == "0.4"


def test_suggest_says_when_the_sequence_space_is_used_up(tmp_path, config, capsys):
    three = write_results(tmp_path / "three.csv", [("a", "A", "1"), ("c", "C", "2"), ("g", "G", "3")],
                          header=("id", "sequence", "label"))
    root = tmp_path / "camp"
    assert cli("init", root, "--data", three, "--config", config) == 0
    capsys.readouterr()
    assert cli("suggest", root, "--batch", 2) == 0  # only T is new
    assert [r["sequence"] for r in read_rows(root / "round_000" / "suggestions.csv")] == ["T"]
    assert "only 1 of 2 designs: 1 sequences of this length and alphabet are neither measured nor " \
           "suggested" in capsys.readouterr().err
    before = tree_hash(root)
    assert cli("suggest", root, "--batch", 2, "--force") == 2  # before any training: nothing is left
    assert "every one of the 4 sequences of length 1 over 4 letters is measured or suggested" in \
        capsys.readouterr().err
    assert tree_hash(root) == before


def test_suggest_names_the_pool_when_it_is_what_runs_short(tmp_path, config, capsys):
    # 54 of the 64 binary 6-mers are new, more than 4 pools of 8 (seiko.MAX_TOP_UPS) can hold: a short
    # plate is the pool's doing (once blamed on the space, as fewer than the batch were left).
    rows = [(f"s{i}", format(i * 6 + 1, "06b"), str(i)) for i in range(10)]
    data = write_results(tmp_path / "bits.csv", rows, header=("id", "sequence", "label"))
    root = tmp_path / "camp"
    assert cli("init", root, "--data", data, "--alphabet", "01", "--config", config, "seiko.pool_size=8") == 0
    capsys.readouterr()
    assert cli("suggest", root, "--batch", 60) == 0
    made = len(read_rows(root / "round_000" / "suggestions.csv"))
    err = capsys.readouterr().err
    assert made < 54 and f"only {made} of 60 designs: the pool (seiko.pool_size 8" in err, err


@pytest.mark.parametrize("suffix", [".fasta", ".csv"])
def test_a_corpus_of_another_length_is_refused_naming_the_data_it_must_match(tmp_path, dna_csv, capsys,
                                                                             suffix):
    # The length comes from the data file, not from the user: "length=8 was given" blamed a setting
    # nobody gave.
    corpus = tmp_path / f"corpus{suffix}"
    corpus.write_text(">a\nACGTACGT\n>b\nACGTAC\n" if suffix == ".fasta"
                      else "sequence\nACGTACGT\nACGTAC\n")
    assert cli("init", tmp_path / "camp", "--data", dna_csv, "--corpus", corpus,
               f"cache_dir={tmp_path / 'cache'}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(corpus) in err, err
    assert "sequence has length 6, expected 8 (the length of start.csv's sequences)" in err, err
    assert not (tmp_path / "camp").exists()
