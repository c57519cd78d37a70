"""``provision reset``: the way out for a device that was removed or replaced.

A device the account no longer knows keeps a data folder that every command
refuses (401 "no longer linked"), and ``secondary`` will not link over it.
``reset`` says what the folder holds, asks, unlinks the device from the
account if the server still has it (a device may remove itself; device 1,
the master, cannot be removed), and deletes the folder.

It deletes only a folder that looks like a data folder: every entry is a
``*.json`` file or a temporary file of the store (``.tmp-*``), or a folder
that is one too. Anything else (``--data-dir ~`` by mistake) is refused.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from textsecure_provision.errors import (
    AuthError,
    NotFoundError,
    ProvisionError,
    RefusedError,
    StoreError,
)
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.devices import api_for
from textsecure_provision.flows.ui import Ui
from textsecure_provision.store import DeviceRecord

MASTER_DEVICE_ID = 1
NOTHING_DELETED = "nothing was unlinked and nothing was deleted."


@dataclass(frozen=True)
class ResetResult:
    path: str
    number: str | None
    device_id: int | None
    unlinked: bool
    """True if this run removed the device from the account."""


async def reset_device(config: FlowConfig, ui: Ui) -> ResetResult:
    ui.state(NOTHING_DELETED)
    store = config.store()
    path = store.path
    if not path.exists():
        raise StoreError(
            f"there is no data folder at {path}", hint="Nothing to reset; check --data-dir."
        )
    _require_data_folder(path)
    record, unreadable = _read_record(config)
    ui.event(
        "reset_planned",
        _plan(path, record, unreadable),
        path=str(path),
        number=record.number if record else None,
        device_id=record.device_id if record else None,
    )
    try:
        ui.confirm(
            f"Delete {path}" + (" and unlink this device" if _can_unlink(record) else "") + "?",
            refusal="you did not confirm the reset",
        )
    except RefusedError as exc:  # not the linking hint ("Nothing was linked...")
        raise exc.with_hint("Nothing was unlinked or deleted.") from None
    unlinked = False
    if record is not None and _can_unlink(record):
        ui.state(
            f"device {record.device_id} may have been unlinked; the folder {path} is still there: "
            "run `provision reset` again to delete it."
        )
        unlinked = await _unlink(config, ui, record)
    ui.state(f"the folder {path} may be partly deleted: run `provision reset` again.")
    with store.locked():  # no other provision process is writing while it goes
        _require_data_folder(path)
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise StoreError(f"cannot delete {path}: {exc.strerror or exc}") from exc
    ui.state(f"the folder {path} was deleted.")
    ui.result(
        "reset_done",
        f"Deleted {path}. Link this device again with `provision secondary`.",
        path=str(path),
        unlinked=unlinked,
        device_id=record.device_id if record else None,
    )
    return ResetResult(
        str(path), record.number if record else None, record.device_id if record else None, unlinked
    )


def _read_record(config: FlowConfig) -> tuple[DeviceRecord | None, str | None]:
    try:
        return config.store().load_record(), None
    except StoreError as exc:  # corrupt or open to others: it can still be deleted
        return None, exc.message


def _can_unlink(record: DeviceRecord | None) -> bool:
    return record is not None and record.device_id != MASTER_DEVICE_ID


def _plan(path: Path, record: DeviceRecord | None, unreadable: str | None) -> str:
    if record is None:
        why = f" ({unreadable})" if unreadable else ""
        return f"The data folder {path} holds no usable account{why}; it will be deleted."
    who = f"device {record.device_id} of {record.number} on {record.server}"
    if record.device_id == MASTER_DEVICE_ID:
        return (
            f"The data folder {path} holds {who}: the account's MASTER. Deleting it loses the "
            "account's identity key for good; the other devices stay linked but no new device "
            "can be linked from here."
        )
    return (
        f"The data folder {path} holds {who}. It will be unlinked from the account (if the "
        "server still has it) and the folder deleted, keys included."
    )


async def _unlink(config: FlowConfig, ui: Ui, record: DeviceRecord) -> bool:
    try:
        async with api_for(record, config) as api:
            await api.remove_device(record.device_id)
    except (AuthError, NotFoundError):  # already removed, or the account was replaced
        ui.event(
            "reset_already_unlinked",
            f"The account no longer lists device {record.device_id}.",
            device_id=record.device_id,
        )
        return False
    except ProvisionError as exc:
        ui.event(
            "reset_unlink_failed",
            f"Could not unlink device {record.device_id} ({exc.message}); deleting the folder "
            f"anyway. On the account's device, `provision devices remove {record.device_id}` "
            "removes it.",
            device_id=record.device_id,
            reason=exc.message,
        )
        return False
    ui.event(
        "reset_unlinked",
        f"Device {record.device_id} was unlinked from {record.number}.",
        device_id=record.device_id,
    )
    return True


def _require_data_folder(path: Path) -> None:
    stray = _stray_entry(path)
    if stray is not None:
        raise StoreError(
            f"{path} does not look like a provision data folder (it holds {stray.name!r}); "
            "nothing was deleted",
            hint="Check --data-dir (or PROVISION_HOME); delete the folder yourself if sure.",
        )


def _stray_entry(folder: Path) -> Path | None:
    """The first entry that no ``provision`` store writes, or None."""
    if folder.is_symlink() or not folder.is_dir():
        return folder
    for child in folder.iterdir():
        if child.is_symlink():
            return child
        if child.is_dir():
            found = _stray_entry(child)
            if found is not None:
                return found
        elif not (child.name.endswith(".json") or child.name.startswith(".tmp-")):
            return child
    return None
