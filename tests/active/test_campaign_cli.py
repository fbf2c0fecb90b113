"""``mbo-campaign``'s command line and settings: typos and out-of-range values are one line on stderr,
exit status 2, before any training and with nothing on disk; overrides the README gives are taken.
No test here trains anything."""

import csv

import pytest

import mbo.active.campaign as campaign
import mbo.active.campaign.commands as commands
from mbo.active.campaign.settings import load_settings
from mbo.config import SettingsError


@pytest.fixture
def no_training(monkeypatch, tmp_path):
    """Pretraining fails the test: every case here must be refused before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("pretrained despite a bad command line")
    monkeypatch.setattr(commands, "pretrained_diffusion", refuse)
    monkeypatch.setenv("MBO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "start.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("sequence", "label"))
        w.writerows((seq, i) for i, seq in enumerate(("ACGTACGT", "AAGTACGT", "ACCTACGT", "ACGGACGT")))
    return tmp_path


def refused(root, capsys, *args) -> str:
    """Run ``init`` with ``args``; assert exit status 2, one line on stderr, nothing new on disk."""
    before = sorted(p.name for p in root.iterdir())
    try:
        status = campaign.main(["init", "camp", "--data", "start.csv", *args])
    except SystemExit as exit_:  # argparse's errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1, err
    assert sorted(p.name for p in root.iterdir()) == before
    return err


@pytest.mark.parametrize("args, message", [
    (["seiko.pool_sise=100"], "command line: unknown setting 'seiko.pool_sise' (known here: c, "),
    (["--seed", "0", "seiko.local.bogus=1"], "command line: unknown setting 'seiko.local.bogus'"),
    (["=3"], "command line: override '=3' names no setting"),
    (["seiko.c=2", "constraints.gc=[0.4,0.6"],
     "command line: override 'constraints.gc=[0.4,0.6' does not parse"),
    (["method@seiko.pool=svd"], "command line: In 'campaign': Could not find 'method/svd'; Available "),
    (["seiko.c=inf"], "command line: setting 'seiko.c' must be a finite number >= 0, got inf"),
    (["cache_dir=1"], "command line: setting 'cache_dir' must be a folder path, got 1"),
    (["--seed", "100000000000000000"], "--seed: must be an integer from 0 to 4294967295"),
    (["--seed", "-1"], "--seed: must be an integer from 0 to 4294967295, got -1"),
])
def test_bad_command_line_is_one_line_before_training(no_training, capsys, args, message):
    assert message in refused(no_training, capsys, *args)


def test_file_value_may_have_another_number_type_than_the_command_line(tmp_path):
    # `seiko.c=2` is an int on the command line; the file's float 1.5 is still a number, and loses.
    path = tmp_path / "lab.yaml"
    path.write_text("seiko: {c: 1.5, acquisition: lognei}\n")
    cfg = load_settings(["seiko.c=2"], path)
    assert cfg.seiko.c == 2 and cfg.seiko.acquisition == "lognei"
    path.write_text("seiko: {c: abc}\n")  # the file's own wrong type is still its own
    with pytest.raises(SettingsError, match=r"lab\.yaml: setting 'seiko\.c' must be a number"):
        load_settings(["seiko.c=2"], path)


def test_deletion_override_after_the_options_is_an_override(no_training, monkeypatch, capsys):
    # README: `~method@seiko.pool` samples the pool plainly; it may come after --data like `key=value`.
    seen = {}
    monkeypatch.setattr(commands, "init", lambda directory, **kw: seen.update(kw) or "ok")
    assert campaign.main(["init", "camp", "--data", "start.csv", "~method@seiko.pool", "seiko.c=2"]) == 0
    assert seen["overrides"] == ["~method@seiko.pool", "seiko.c=2"]
    assert load_settings(seen["overrides"]).seiko.get("pool") is None


def test_status_of_a_file_or_a_missing_folder_says_which(tmp_path, capsys):
    data = tmp_path / "start.csv"
    data.write_text("sequence,value\nACGT,1\n")
    assert campaign.main(["status", str(data)]) == 2
    assert "start.csv: a file, not a campaign directory" in capsys.readouterr().err
    assert campaign.main(["status", str(tmp_path / "nothere")]) == 2
    assert "nothere: no such campaign directory" in capsys.readouterr().err
