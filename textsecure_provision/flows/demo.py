"""``provision demo``: a whole link between two throw-away devices, through the real flows.

The caller provides a running server (``cli/demo.py`` starts one on loopback)
and a ``Ui`` per side. The secondary's QR code goes through a real PNG and
the real scanner, so the demo exercises exactly what two machines would,
up to the acknowledgement: the secondary announces itself (NEW_DEVICE_REGISTERED)
and the master waits for that before the link counts as done (§1 step 7).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from textsecure_provision.errors import TimedOutError
from textsecure_provision.flows.acknowledge import ack_hook
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.devices import list_devices
from textsecure_provision.flows.master import link_master
from textsecure_provision.flows.register import register_account
from textsecure_provision.flows.secondary import ListenOptions, listen_secondary
from textsecure_provision.flows.sessions import linked_hook
from textsecure_provision.flows.ui import Ui
from textsecure_provision.store import DeviceRecord
from textsecure_provision.transport.api import DeviceInfo

DEMO_NUMBER_PREFIX = "+1555"
QR_WAIT_S = 30.0


@dataclass(frozen=True)
class DemoResult:
    number: str
    device_id: int
    devices: list[DeviceInfo]
    link_seconds: float


def demo_number() -> str:
    """A throw-away number in the fictional +1 555 range."""
    return DEMO_NUMBER_PREFIX + "".join(secrets.choice("0123456789") for _ in range(7))


async def run_demo(
    server_url: str,
    workdir: Path,
    master_ui: Ui,
    secondary_ui: Ui,
    link_shown: asyncio.Event,
    *,
    registration_code: str,
    timeout_s: float = 60.0,
) -> DemoResult:
    """Register a master, link a secondary to it, list the devices.

    ``link_shown`` is set by ``secondary_ui`` once its QR code is written to
    ``workdir / "qr.png"`` (the secondary's ``channel_opened``).
    """
    number = demo_number()
    master = FlowConfig(data_dir=str(workdir / "master"), server_url=server_url)
    secondary = FlowConfig(data_dir=str(workdir / "secondary"), server_url=server_url)
    await register_account(master, master_ui, number, code=registration_code, name="demo master")
    listening = asyncio.create_task(
        listen_secondary(
            secondary,
            secondary_ui,
            ListenOptions(timeout_s=timeout_s, expect_number=number, name="demo secondary"),
            on_linked=linked_hook(secondary.store()),
        )
    )
    try:
        await _wait_shown(link_shown, listening)
        from textsecure_provision.qr.scan import scan_text

        started = time.monotonic()
        link_text = scan_text(workdir / "qr.png")  # the master "photographs" the QR code
        await link_master(
            master, master_ui, link_text, on_sent=ack_hook(master.store(), timeout_s=timeout_s)
        )
        record = await listening
        elapsed = time.monotonic() - started
    finally:
        if not listening.done():
            listening.cancel()
    assert isinstance(record, DeviceRecord)
    devices = await list_devices(master)
    return DemoResult(number, record.device_id, devices, elapsed)


async def _wait_shown(link_shown: asyncio.Event, listening: asyncio.Task[object]) -> None:
    waiter = asyncio.create_task(link_shown.wait())
    done, _ = await asyncio.wait(
        {waiter, listening}, timeout=QR_WAIT_S, return_when=asyncio.FIRST_COMPLETED
    )
    waiter.cancel()
    if listening in done:
        listening.result()  # re-raises the secondary's error
    if waiter not in done:
        raise TimedOutError("the secondary did not show a QR code in time")
