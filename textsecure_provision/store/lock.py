"""One writer at a time: an advisory lock on the data folder itself.

The lock is taken on the folder's own descriptor (``flock`` works on folders
on Linux and the BSDs), so it needs no lock file: the folder's content stays
exactly what the store wrote, which keeps "a failed link leaves the folder as
it was" checkable byte for byte.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from textsecure_provision.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, single writer assumed
    fcntl = None  # type: ignore[assignment]

LOCK_WAIT_S = 10.0  # long enough for another process's commit, short enough to tell the user
_POLL_S = 0.05


@contextmanager
def folder_lock(folder: Path, *, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (which must exist) for the ``with`` block."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise StoreError(f"cannot open the data folder {folder}: {exc.strerror}") from exc
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"the data folder {folder} is locked by another provision process",
                        hint="Wait for the other `provision` command to finish, then retry.",
                    ) from None
                time.sleep(_POLL_S)  # polling a lock held by another process
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
