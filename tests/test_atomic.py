"""Atomic writes: all-or-nothing, no overwrite unless asked, no temp files left behind."""

import pytest

from mbo.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def test_write_text_and_bytes(tmp_path):
    assert atomic_write_text(tmp_path / "sub" / "a.txt", "hello").read_text() == "hello"
    assert atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "sub"]


def test_refuses_overwrite_and_keeps_content(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    atomic_write_text(path, "new", overwrite=True)
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failure_leaves_nothing_behind(tmp_path):
    path = tmp_path / "a.txt"
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_old_file_on_overwrite(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_target_appearing_during_write_is_not_clobbered(tmp_path):
    path = tmp_path / "a.txt"
    with pytest.raises(FileExistsError), atomic_path(path) as tmp:
        tmp.write_text("mine")
        path.write_text("theirs")  # another writer got there first
    assert path.read_text() == "theirs" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    from mbo.atomic import atomic_write_text

    umask = os.umask(0)
    os.umask(umask)
    path = atomic_write_text(tmp_path / "perm.txt", "x")
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask


def test_a_checkpoint_gets_the_usual_permissions_too(tmp_path):
    import os

    import torch

    from mbo.checkpoint import save_checkpoint

    umask = os.umask(0)
    os.umask(umask)
    # safetensors writes 0600 files of its own and renames them over the temporary file
    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(2)}, config={}, kind="T")
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask


def test_file_systems_without_hard_links_still_get_new_files(tmp_path, monkeypatch):
    import errno
    import os

    def no_links(src, dst):  # as vfat and exFAT answer link()
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = atomic_write_text(tmp_path / "a.txt", "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(FileExistsError):
        atomic_write_text(path, "again")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
