"""Argument parsing of the command-line tools, with every mistake reported in one line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (exit status 2), pointing at ``--help``
    instead of printing the usage block first; its subcommands' parsers are the same kind."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def stdout_reader_left() -> None:
    """Call on a ``BrokenPipeError`` from stdout (``… | head`` read only part of it): the rest goes to
    /dev/null, so Python's flush at exit raises no second error."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
