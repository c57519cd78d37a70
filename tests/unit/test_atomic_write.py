"""The one atomic-write helper used by the store, QR images and the server's port file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from textsecure_provision import atomic_write as aw


def test_replaces_whole_file_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    aw.atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600  # a fresh file: the old one's mode is gone
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_failure_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def fail(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(aw.os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        aw.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_temporaries_of_dead_writers_are_swept_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # exited: no process has this pid now (or soon, reused: kept)
    target = tmp_path / "f"
    stale = tmp_path / f"{aw.TMP_PREFIX}f.{dead_pid}.0000"
    live = tmp_path / f"{aw.TMP_PREFIX}f.{os.getppid()}.0000"
    other = tmp_path / f"{aw.TMP_PREFIX}g.{dead_pid}.0000"
    for p in (stale, live, other):
        p.write_bytes(b"x")
    aw.atomic_write(target, b"new")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert stale.name not in left or _alive(dead_pid)
    assert live.name in left and other.name in left  # a live writer's, another file's: kept


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_refuses_to_write_through_a_symlinked_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # O_EXCL: an existing name (here a symlink planted at the temp path) is never followed.
    target = tmp_path / "f"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    monkeypatch.setattr(aw.os, "urandom", lambda n: b"\x00" * n)
    (tmp_path / f"{aw.TMP_PREFIX}f.{os.getpid()}.00000000").symlink_to(victim)
    with pytest.raises(FileExistsError):
        aw.atomic_write(target, b"new")
    assert victim.read_bytes() == b"keep"
    assert not target.exists()
