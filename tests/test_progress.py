"""Progress of long work (mbo.progress): a bar on a terminal, log lines elsewhere."""

import logging

import mbo.progress
from mbo.progress import progress_bar


def test_without_a_terminal_long_work_is_logged_and_short_work_is_silent(caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="mbo.progress"):
        assert sum(progress_bar(range(5), progress=False, desc="short")) == 10
        assert not caplog.records  # under a minute: nothing
        monkeypatch.setattr(mbo.progress, "QUIET_SECONDS", 0.0)
        assert sum(progress_bar(range(5), progress=False, desc="fine-tune (VIDD)", leave=False)) == 10
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all(line.startswith("fine-tune (VIDD):") for line in lines)
    assert lines[-1].startswith("fine-tune (VIDD): 100%") and "5/5" in lines[-1]
