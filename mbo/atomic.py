"""Atomic file writes: write to a temporary file in the target directory, then rename over the target.

A crash mid-write leaves either the old file or the new one, never a torn one; and nothing that exists
is replaced unless the caller says ``overwrite=True``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# link() errors of file systems without hard links.
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed to ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (checked before and after writing).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600, and so does a writer that replaces the file (safetensors writes its own
        # temporary file and renames it over ours): give the file the mode a plain open() would have, or
        # a group sharing the folder cannot read it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if the target appeared meanwhile, so a racing writer cannot be clobbered.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} already exists; refusing to overwrite it") from None
            except OSError as err:
                if err.errno not in NO_HARD_LINKS:
                    raise
                # vfat / exFAT (a USB stick) and some network file systems have no hard links: check,
                # then rename. A writer appearing in between could be clobbered, but the project's
                # writers hold a lock or write their own new file.
                if path.exists():
                    raise FileExistsError(f"{path} already exists; refusing to overwrite it") from None
                os.replace(tmp, path)
                return
            tmp.unlink()
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)
