"""The master's wait for the acknowledgement of a link (§1 step 7).

After ``master scan`` has sent the DeviceInit, the link is complete only when
the new device has registered, uploaded its keys and told this device so: a
type-5 ``DeviceControl{NEW_DEVICE_REGISTERED, newDeviceId}`` from a device of
this account that did not exist before the scan (``known``, listed before the
DeviceInit was sent, so the new device cannot be among them).

The wait long-polls ``GET /v1/messages/?wait=S`` and hands every message to the
same ``Receiver`` as ``provision receive``: other messages that arrive
meanwhile are decrypted, acted on, reported and acknowledged exactly as
``receive`` would, so none is lost or handled twice. If a ``receive`` run in
the same data folder takes the announcement first (the wait then sees it as a
duplicate, or not at all), the device it recorded still counts. Running out
of time is ``TimedOutError`` (exit 3): the new device may be linked without
having said so, or not linked at all.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING

from textsecure_provision.crypto.keys import Rng
from textsecure_provision.errors import TimedOutError
from textsecure_provision.flows.ui import Ui
from textsecure_provision.store import DeviceRecord, DeviceStore
from textsecure_provision.transport.api import ApiClient

if TYPE_CHECKING:
    from textsecure_provision.flows.master import MasterLinkResult, SentHook
    from textsecure_provision.flows.receive import Outcome

DEFAULT_ACK_TIMEOUT_S = 120.0

TIMEOUT_HINT = (
    "The link may be incomplete. `provision devices` shows whether the new device "
    "registered; if it did, run `provision send-control new-device-registered` on it and "
    "`provision receive --wait 30` here; if not, restart `provision secondary` and scan again."
)


def _is_ack(outcome: Outcome, record: DeviceRecord, known: set[int]) -> bool:
    # Receiver already checked newDeviceId == the sending device and our own account.
    return (
        outcome.is_new_device
        and outcome.source == record.number
        and outcome.source_device is not None
        and outcome.source_device not in known
    )


async def wait_for_new_device(
    record: DeviceRecord,
    api: ApiClient,
    ui: Ui,
    *,
    store: DeviceStore,
    known: Iterable[int],
    timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
    rng: Rng = secrets.token_bytes,
) -> int:
    """Handle messages until a new device's NEW_DEVICE_REGISTERED; return its device id."""
    # Imported here, not at the top: `master scan` pays for the session layer (a few tens of
    # ms) only once the DeviceInit is out, while the new device registers and uploads its keys,
    # instead of before sending (B2).
    from textsecure_provision.flows.receive import DUPLICATE, Receiver

    known_ids = set(known)
    receiver = Receiver(record, api, ui, store=store, rng=rng)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    ui.event(
        "waiting_ack",
        f"Waiting up to {timeout_s:.0f} s for the new device to confirm the link...",
        timeout=timeout_s,
    )
    found: int | None = None
    while found is None:
        remaining = deadline - loop.time()
        if remaining <= 0:
            found = await _handled_elsewhere(api, store, known_ids)
            if found is not None:
                break
            raise TimedOutError(
                f"the new device did not confirm the link within {timeout_s:.0f} s",
                hint=TIMEOUT_HINT,
            )
        ui.countdown("Waiting for the new device to confirm the link", remaining)
        docs, _more = await receiver.poll(deadline)
        duplicates = False
        for doc in docs:  # the whole batch: what was fetched is handled, never left half-done
            outcome = await receiver.handle(doc)
            duplicates = duplicates or outcome.kind == DUPLICATE
            if found is None and _is_ack(outcome, record, known_ids):
                found = outcome.source_device
        if found is None and duplicates:
            found = await _handled_elsewhere(api, store, known_ids)
    return found


async def _handled_elsewhere(api: ApiClient, store: DeviceStore, known: set[int]) -> int | None:
    """The new device, if another process (a `receive` run meanwhile) took its announcement.

    That process recorded it among the announced devices. It counts if the server lists it
    now and did not before the scan: a device announced long ago and since removed does not.
    """
    from textsecure_provision.store.sessions import SessionStore

    candidates = set(SessionStore(store).load().devices) - known
    if not candidates:
        return None
    listed = {d.id for d in await api.fetch_devices()}
    new = sorted(candidates & listed)
    return new[-1] if new else None


def ack_hook(
    store: DeviceStore, *, timeout_s: float = DEFAULT_ACK_TIMEOUT_S, rng: Rng = secrets.token_bytes
) -> SentHook:
    """The ``on_sent`` hook of ``link_master``: wait for the acknowledgement and report it."""

    async def on_sent(
        result: MasterLinkResult, record: DeviceRecord, api: ApiClient, ui: Ui
    ) -> None:
        device_id = await wait_for_new_device(
            record,
            api,
            ui,
            store=store,
            known=result.known_devices,
            timeout_s=timeout_s,
            rng=rng,
        )
        ui.state(f"device {device_id} is linked to {record.number} and confirmed it.")
        ui.result(
            "acknowledged",
            f"Device {device_id} confirmed the link: it is now a device of {record.number}.",
            device_id=device_id,
            number=record.number,
        )

    return on_sent
