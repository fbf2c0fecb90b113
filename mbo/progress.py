"""Progress of long work: a tqdm bar on a terminal, a log line a minute anywhere else.

Where no bar is drawn (``progress`` off: a log file, a cluster job's output), the same bar is written
through :mod:`logging` at most once a minute and only for work that has already lasted a minute, so
an hour of fine-tuning on long sequences does not look like a hang while short steps stay silent.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable

from tqdm.auto import tqdm

log = logging.getLogger("mbo.progress")
QUIET_SECONDS = 60.0


class _LogLines(io.TextIOBase):
    """A file for tqdm that logs each status line it writes."""

    def write(self, text: str) -> int:
        line = text.strip("\r\n ")
        if line:
            log.info("%s", line)
        return len(text)


def progress_bar(iterable: Iterable | None = None, *, progress: bool, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` when ``progress``; otherwise the same bar as log lines, one a minute
    after the first minute."""
    if progress:
        return tqdm(iterable, **kwargs)
    kwargs.pop("leave", None)
    return tqdm(iterable, file=_LogLines(), mininterval=QUIET_SECONDS, delay=QUIET_SECONDS, ascii=True,
                **kwargs)
