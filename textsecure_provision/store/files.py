"""Files of the data folder: permission checks and atomic writes.

The folder holds the identity private key, so it must be the user's own and
closed to everyone else: folder 0700, files 0600. Both are checked on every
run, not only at creation, because a later ``chmod`` or a copy can open them;
a bad mode is a ``StoreError`` (exit 9), never silently repaired.

Writes are atomic (temp file in the same folder, fsync, rename, fsync of the
folder), so a crash or a failed step leaves either the old file or the new
one, never half of one (§8: nothing half-done).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from textsecure_provision.atomic_write import TMP_PREFIX, fsync_dir
from textsecure_provision.atomic_write import atomic_write as write_file_atomically
from textsecure_provision.errors import StoreError

DIR_MODE = 0o700
FILE_MODE = 0o600


def _owner_ok(st: os.stat_result) -> bool:
    getuid = getattr(os, "getuid", None)
    return getuid is None or st.st_uid == getuid()


def check_dir(path: Path) -> bool:
    """True if the folder exists and is safe, False if it does not exist; else raise."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot read the data folder {path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"the data folder {path} is not a folder (or is a symbolic link)")
    if not _owner_ok(st):
        raise StoreError(f"the data folder {path} belongs to another user")
    if st.st_mode & 0o077:
        raise StoreError(
            f"the data folder {path} is open to other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}, must be 0700)",
            hint=f"Run `chmod 700 {path}` if nobody else could have read it, "
            "or link the device again in a new folder.",
        )
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            check_dir(child)  # sub-folders (e.g. sessions) follow the same rule
        else:
            check_file(child)
    return True


def require_writable_dir(folder: Path, data_dir: Path) -> None:
    """``folder`` (the data folder, or the parent it will be made in) must take new entries.

    Probed by creating and removing an empty folder: permission bits do not tell (root
    passes them; /proc and read-only mounts refuse all the same), and nothing is left.
    """
    if not folder.is_dir():
        raise StoreError(
            f"cannot create the data folder {data_dir}: {folder} is not a folder",
            hint="Choose another --data-dir (or PROVISION_HOME); nothing was sent or changed.",
        )
    probe = folder / f"{TMP_PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.mkdir(mode=DIR_MODE)
    except OSError as exc:
        what = "write to" if folder == data_dir else f"create the data folder {data_dir} in"
        raise StoreError(
            f"cannot {what} {folder}: {exc.strerror or exc}",
            hint="Choose a folder you may write to (--data-dir or PROVISION_HOME); "
            "nothing was sent or changed.",
        ) from exc
    with contextlib.suppress(OSError):
        probe.rmdir()


def check_file(path: Path) -> None:
    """A file of the data folder must be a regular file, the user's, mode 0600 or stricter."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return  # removed meanwhile (another process's temp file): nothing to check
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path} in the data folder is not a regular file")
    if not _owner_ok(st):
        raise StoreError(f"{path} belongs to another user")
    if st.st_mode & 0o077:
        raise StoreError(
            f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}, must be 0600)",
            hint=f"Run `chmod 600 {path}` if nobody else could have read it, "
            "or link the device again in a new folder.",
        )


def ensure_dir(path: Path) -> None:
    """Create the folder (0700, parents as needed) or check the existing one."""
    if check_dir(path):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        pass  # created by another process meanwhile; checked below
    except OSError as exc:
        raise StoreError(f"cannot create the data folder {path}: {exc.strerror}") from exc
    with contextlib.suppress(OSError):
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    check_dir(path)


def read_file(path: Path) -> bytes | None:
    """The file's bytes after a permission check, or None if it does not exist."""
    check_file(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (0600) atomically and durably (``atomic_write.py``)."""
    try:
        write_file_atomically(path, data, mode=FILE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc


def remove_file(path: Path) -> None:
    """Remove a file if it exists (durably: the folder is fsynced)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot remove {path}: {exc.strerror}") from exc
    fsync_dir(path.parent)
