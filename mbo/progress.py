"""Progress of long work: a tqdm bar on a terminal, a log line a minute anywhere else.

Where no bar is drawn (``progress`` off: a log file, a cluster job's output), the same bar is written
through :mod:`logging` at most once a minute and only for work that has already lasted a minute, so
an hour of fine-tuning on long sequences does not look like a hang while short steps stay silent.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable

from tqdm.auto import tqdm

log = logging.getLogger("mbo.progress")
QUIET_SECONDS = 60.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _LogLines(io.TextIOBase):
    """A file for tqdm that logs each status line it writes."""

    def write(self, text: str) -> int:
        # A bar that does not stay (leave=False) moves the cursor back up; a log has no cursor.
        line = ANSI_ESCAPE.sub("", text).strip("\r\n ")
        if line:
            log.info("%s", line)
        return len(text)


class _LoggedBar(tqdm):
    """A bar written as log lines: a new postfix waits for the next line (a minute), where on a
    terminal it redraws the bar at once; redrawn each time, it logged a line per postfix."""

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def close(self) -> None:
        # Closing redraws the last state, which a terminal overwrites and a log would repeat.
        if self.last_print_n == self.n:
            self.leave = False
        super().close()


def progress_bar(iterable: Iterable | None = None, *, progress: bool, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` when ``progress``; otherwise the same bar as log lines, one a minute
    after the first minute."""
    if progress:
        return tqdm(iterable, **kwargs)
    kwargs.pop("leave", None)
    # miniters=1: tqdm's monitor thread re-prints a bar whose dynamic miniters grew, 10 s after each
    # line, which doubled every log line of slow steps.
    return _LoggedBar(iterable, file=_LogLines(), mininterval=QUIET_SECONDS, delay=QUIET_SECONDS,
                      miniters=1, ascii=True, **kwargs)
