"""Progress of long work (mbo.progress): a bar on a terminal, log lines elsewhere."""

import logging
import re

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


def test_log_lines_are_neither_cursor_moves_nor_reprinted_by_the_monitor(caplog):
    bar = progress_bar(range(3), progress=False, desc="x")
    # tqdm's monitor thread re-prints only bars whose miniters it may grow; a log line a minute is enough.
    assert bar.miniters == 1 and not bar.dynamic_miniters
    with caplog.at_level(logging.INFO, logger="mbo.progress"):
        bar.fp.write("\x1b[A")  # what a bar that does not stay writes to move the cursor up
        bar.fp.write("\rx: 50%\x1b[A")
    assert [r.getMessage() for r in caplog.records] == ["x: 50%"]
    bar.close()


def test_a_postfix_waits_for_the_next_line_and_the_last_line_is_not_repeated(caplog, monkeypatch):
    # Pretraining sets its NELBO as a postfix every 50 steps; redrawn each time, that was a log line
    # per postfix, whatever the minute between lines.
    monkeypatch.setattr(mbo.progress, "QUIET_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="mbo.progress"):
        bar = progress_bar(range(4), progress=False, desc="pretrain")
        for step in bar:
            bar.set_postfix(nelbo=f"{step:.1f}")
    lines = [r.getMessage() for r in caplog.records]
    counts = [int(re.search(r"(\d+)/4", line).group(1)) for line in lines]
    assert counts == sorted(set(counts)), lines  # each line a new step count: none for a postfix alone
    assert lines[-1].startswith("pretrain: 100%") and "nelbo=3.0" in lines[-1]
