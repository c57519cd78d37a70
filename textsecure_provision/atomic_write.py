"""The one way this project replaces a file: readers see the old file or the whole new one.

Used for the data folder (``store/files.py``), QR code images (``qr/render.py``) and the
server's port file (``server/runner.py``). The steps: a temporary file in the same folder
(created exclusively, not through a symlink, with the caller's mode), write, fsync, rename over
the target, fsync the folder (a rename is durable only once its folder is synced, POSIX). On
any failure the temporary file is removed and the old file is left as it was.

A writer killed between create and rename (kill -9) leaves its temporary file behind; its name
carries the writer's pid, and the next write to the same target removes those of dead writers.

Errors are plain ``OSError``: each caller says what the file was for in its own error.
This module imports nothing from the package.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TMP_PREFIX = ".tmp-"


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably; ``mode`` is less the umask."""
    target = Path(path)
    folder = target.parent
    sweep_stale_temps(target)
    tmp = folder / f"{TMP_PREFIX}{target.name}.{os.getpid()}.{os.urandom(4).hex()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(folder)


def sweep_stale_temps(path: Path) -> None:
    """Remove temporary files of ``path`` left by writers that died before their rename.

    Such a file never replaced ``path``, so nothing reads it; it is only clutter (perhaps with
    a copy of secrets in it). A temporary file of a live process is left alone.
    """
    for tmp in path.parent.glob(f"{TMP_PREFIX}{path.name}.*"):
        pid_text = tmp.name[len(TMP_PREFIX) + len(path.name) + 1 :].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but not ours, or cannot tell: keep its file
    return True


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # not supported here (e.g. Windows); the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
