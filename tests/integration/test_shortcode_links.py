"""Whole links by short code through the real server, on every backend, flows on both sides.

The relay here records every byte it is handed (mailbox messages both ways, the
channel frame with the DeviceInit, the tokens it issued) and then tries what a
curious relay could: every 32-byte window of all it saw as the new device's
ephemeral key, and a SPAKE2 run of its own with the right code (a relay that
guessed the secret still only saw the public messages). None opens anything.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from textsecure_provision.crypto import pake
from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.errors import EnvelopeError, ProvisionError, ShortCodeMessageError
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.register import register_account
from textsecure_provision.flows.secondary import ListenOptions, listen_secondary
from textsecure_provision.flows.shortcode import link_master_by_code
from textsecure_provision.flows.ui import RecordingUi
from textsecure_provision.protocol.encoding import b64decode
from textsecure_provision.protocol.link import parse_link
from textsecure_provision.protocol.messages import decode_device_init
from textsecure_provision.protocol.provisioning import open_device_init
from textsecure_provision.protocol.shortcode import FrameType, decode_frame, parse_code
from textsecure_provision.store import DeviceRecord, DeviceStore

from .conftest import RunningServer
from .helpers import TEST_CODE, new_number

WAIT_S = 15.0


class CodeUi(RecordingUi):
    def __init__(self) -> None:
        super().__init__()
        self.opened: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def channel_opened(self, link: str, **kw: Any) -> None:
        super().channel_opened(link, **kw)
        self.opened.put_nowait({"link": link, **kw})


class RecordingStore:
    """The server's own nameplate store, with every byte it is handed written down."""

    def __init__(self, inner: Any, seen: list[bytes]) -> None:
        self._inner, self.seen = inner, seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def allocate(self, channel_id: str, token_digest: bytes, ttl_ms: int) -> Any:
        self.seen += [channel_id.encode(), token_digest]
        return await self._inner.allocate(channel_id, token_digest, ttl_ms)

    async def post(self, nameplate: int, token_digest: bytes, messages: list[bytes]) -> Any:
        self.seen += [token_digest, *messages]
        return await self._inner.post(nameplate, token_digest, messages)


def record_relay(server: RunningServer) -> tuple[list[bytes], list[bytes]]:
    """(everything the mailbox was handed, every frame relayed on a channel)."""
    seen: list[bytes] = []
    relayed: list[bytes] = []
    nameplates = server.app.state.nameplates
    nameplates.store = RecordingStore(nameplates.store, seen)
    fanout = server.services.fanout
    publish = fanout.publish

    async def recording_publish(channel_id: str, frame: str) -> bool:
        relayed.append(b64decode(json.loads(frame)["message"]))  # the DeviceInit, as relayed
        return bool(await publish(channel_id, frame))

    fanout.publish = recording_publish
    return seen, relayed


class RecordingRng:
    """``secrets.token_bytes``, keeping what it gave (to find the secondary's own key)."""

    def __init__(self) -> None:
        self.given: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        out = secrets.token_bytes(n)
        self.given.append(out)
        return out


async def master_config(server: RunningServer, tmp_path: Path) -> FlowConfig:
    config = FlowConfig(data_dir=str(tmp_path / "master"), server_url=server.url)
    await register_account(config, RecordingUi(), new_number(), code=TEST_CODE)
    return config


async def test_a_recording_relay_cannot_open_the_device_init(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = server_factory()
    seen, relayed = record_relay(server)
    master = await master_config(server, tmp_path)
    number = DeviceStore(master.data_dir).require_record().number
    rng = RecordingRng()
    s_ui = CodeUi()
    secondary = FlowConfig(data_dir=str(tmp_path / "secondary"), server_url=server.url)
    listening = asyncio.create_task(
        listen_secondary(secondary, s_ui, ListenOptions(expect_number=number), rng=rng)
    )
    opened = await asyncio.wait_for(s_ui.opened.get(), WAIT_S)
    result = await link_master_by_code(master, RecordingUi(), opened["code"])
    record = await asyncio.wait_for(listening, WAIT_S)
    assert isinstance(record, DeviceRecord) and record.device_id == 2

    frames = [decode_frame(m) for m in seen if m and m[0] in (1, 2, 3) and len(m) in (34, 33, 66)]
    assert sorted(f.type for f in frames) == sorted(
        [FrameType.PAKE, FrameType.PAKE, FrameType.CONFIRM, FrameType.CONFIRM, FrameType.LINK]
    )
    (device_init,) = relayed
    decode_device_init(device_init)  # it is the DeviceInit, as the relay saw it
    seen = seen + relayed

    # The secondary's own key opens it: this is the real one...
    link = parse_link(opened["link"])
    own = [KeyPair.from_private(b) for b in rng.given if len(b) == 32]
    ephemeral = next(k for k in own if k.public == link.public_key)
    assert open_device_init(device_init, ephemeral).confirmation == result.confirmation
    # ...and the relay never saw that key, not even its public half (it travelled sealed).
    everything = b"".join(seen)
    assert ephemeral.private.serialize() not in everything
    assert link.public_key.serialize() not in everything
    assert link.public_key.serialize()[1:] not in everything
    # Every 32-byte window of everything it saw, tried as the private key: nothing opens.
    for i in range(len(everything) - 31):
        guess = KeyPair.from_private(everything[i : i + 32])
        with pytest.raises(ProvisionError) as err:
            open_device_init(device_init, guess)
        assert isinstance(err.value, EnvelopeError)

    # A relay that even knew the code runs SPAKE2 against the recorded messages: wrong key.
    code = parse_code(opened["code"])
    ids = pake.side_ids(server.url, code.nameplate)
    pake_b = next(f for f in frames if f.type is FrameType.PAKE and f.body[:1] == b"B")
    sealed = next(f for f in frames if f.type is FrameType.LINK)
    keys = pake.Pake("master", code.password, ids, secrets.token_bytes).finish(pake_b.body)
    aad = ids[0]
    with pytest.raises(ShortCodeMessageError, match="failed authentication"):
        pake.open_sealed(keys.to_master, sealed.body, aad)
