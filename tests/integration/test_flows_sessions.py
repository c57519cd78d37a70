"""The session flows against the real server app, in process (uvicorn on 127.0.0.1:0, SQLite).

Links go through the real channel, with the real hooks: the secondary announces
itself (NEW_DEVICE_REGISTERED) and the master waits for that acknowledgement.
Then DeviceControl messages go between devices, and the stale-session paths are
driven by real server answers (410, 404), or by an ApiClient that answers a
PUT the way a server of another design would (409) — the only stand-in here.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from textsecure_provision.errors import (
    MismatchedDevicesError,
    ServerUnreachableError,
    SessionError,
    StaleDevicesError,
    TimedOutError,
)
from textsecure_provision.flows.acknowledge import ack_hook, wait_for_new_device
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.devices import api_for
from textsecure_provision.flows.master import link_master
from textsecure_provision.flows.receive import (
    DROPPED,
    DUPLICATE,
    MESSAGE,
    UNDECRYPTABLE,
    ReceiveSummary,
    receive_messages,
)
from textsecure_provision.flows.register import register_account
from textsecure_provision.flows.secondary import ListenOptions, listen_secondary
from textsecure_provision.flows.sessions import (
    SendReport,
    fetch_bundles,
    new_device_registered,
    parse_key_bundles,
    send_control,
    sent_message,
)
from textsecure_provision.flows.sessions import (
    linked_hook as make_linked_hook,
)
from textsecure_provision.flows.ui import RecordingUi
from textsecure_provision.protocol.bodies import OutgoingMessage
from textsecure_provision.protocol.messages import ControlType, encode_device_control
from textsecure_provision.protocol.session import encrypt, initiate_session
from textsecure_provision.store.sessions import SESSIONS_FILE, SessionStore
from textsecure_provision.transport.api import ApiClient, Credentials

from .flow_support import CODE, NUMBER, LinkUi, running_server

OTHER = "+15550002222"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    async with running_server(tmp_path) as url:
        yield url


async def register(url: str, tmp_path: Path, name: str, number: str = NUMBER) -> FlowConfig:
    config = FlowConfig(data_dir=str(tmp_path / name), server_url=url)
    await register_account(config, RecordingUi(), number, code=CODE)
    return config


async def link(
    master: FlowConfig, tmp_path: Path, name: str, *, ack_timeout_s: float | None = 10
) -> tuple[FlowConfig, RecordingUi, LinkUi]:
    """A whole link with both hooks; returns the secondary's config and both UIs."""
    number = master.store().require_record().number
    config = FlowConfig(data_dir=str(tmp_path / name), server_url=master.server_url)
    s_ui, m_ui = LinkUi(), RecordingUi()
    listening = asyncio.create_task(
        listen_secondary(
            config,
            s_ui,
            ListenOptions(expect_number=number),
            on_linked=make_linked_hook(config.store()),
        )
    )
    link_text = await asyncio.wait_for(s_ui.links.get(), 10)
    on_sent = None if ack_timeout_s is None else ack_hook(master.store(), timeout_s=ack_timeout_s)
    await link_master(master, m_ui, link_text, on_sent=on_sent)
    await asyncio.wait_for(listening, 10)
    return config, m_ui, s_ui


async def receive(config: FlowConfig, wait_s: float = 0) -> tuple[ReceiveSummary, RecordingUi]:
    record = config.store().require_record()
    ui = RecordingUi()
    async with api_for(record, config) as api:
        summary = await receive_messages(record, api, ui, store=config.store(), wait_s=wait_s)
    return summary, ui


async def send(
    config: FlowConfig, control: Any = None, *, fresh: bool = False, api_cls: Any = ApiClient
) -> SendReport:
    record = config.store().require_record()
    control = control if control is not None else sent_message(OTHER, "hi")
    creds = Credentials(record.number, record.password, record.device_id)
    async with api_cls(record.server, creds) as api:
        return await send_control(record, api, control, store=config.store(), fresh_sessions=fresh)


def bodies(summary: ReceiveSummary) -> list[tuple[int | None, str]]:
    return [
        (o.source_device, o.control.sent.body)
        for o in summary.outcomes
        if o.kind == MESSAGE and o.control is not None and o.control.sent is not None
    ]


def sessions_doc(config: FlowConfig) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((Path(config.data_dir or "") / SESSIONS_FILE).read_text())
    return doc


# -- the acknowledgement -------------------------------------------------------------------------


async def test_link_is_acknowledged_and_sessions_are_stored(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    prekeys_before = master.store().require_record().prekeys
    second, m_ui, s_ui = await link(master, tmp_path, "s1")

    assert s_ui.names() == ["channel_opened", "device_init_received", "registered", "announced"]
    assert s_ui.fields("announced") == {"device_id": 2, "devices": [1]}
    assert m_ui.names() == ["link_parsed", "sent", "waiting_ack", "message", "acknowledged"]
    assert m_ui.fields("acknowledged") == {"device_id": 2, "number": NUMBER}
    message = m_ui.fields("message")
    assert message["message_type"] == 5  # §1 step 7: a PreKeyWhisperMessage
    assert message["control"] == {"type": "NEW_DEVICE_REGISTERED", "new_device_id": 2}

    # The master used exactly one one-time prekey, and deleted it; the signed one stays.
    m_record = master.store().require_record()
    assert len(m_record.prekeys) == len(prekeys_before) - 1
    m_book = SessionStore(master.store()).load()
    assert m_book.peers() == [(NUMBER, 2)]
    assert 2 in m_book.devices
    s_book = SessionStore(second.store()).load()
    assert s_book.peers() == [(NUMBER, 1)]
    pending = s_book.session(NUMBER, 1)
    assert pending is not None and not pending.has_received_reply
    # nothing left for the master: the acknowledgement was acknowledged (DELETE)
    summary, _ = await receive(master)
    assert summary.outcomes == []


async def test_two_secondaries_each_announcement_reaches_every_earlier_device(
    server: str, tmp_path: Path
) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    _, m_ui, s2_ui = await link(master, tmp_path, "s2")
    assert m_ui.fields("acknowledged")["device_id"] == 3  # not device 2's older announcement
    assert sorted(s2_ui.fields("announced")["devices"]) == [1, 2]

    summary, ui = await receive(s1)
    assert [(o.kind, o.source_device, o.msg_type) for o in summary.outcomes] == [(MESSAGE, 3, 5)]
    assert ui.fields("message")["control"]["new_device_id"] == 3
    assert 3 in SessionStore(s1.store()).load().devices
    assert (await receive(s1))[0].outcomes == []


async def test_master_ignores_known_devices_and_times_out(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    # Device 2 announces itself again: handled like `receive` would, but it is no
    # acknowledgement of a new link (device 2 existed before this wait).
    await send(s1, new_device_registered(s1.store().require_record()), fresh=True)
    record = master.store().require_record()
    ui = RecordingUi()
    async with api_for(record, master) as api:
        with pytest.raises(TimedOutError) as info:
            await wait_for_new_device(
                record, api, ui, store=master.store(), known=[1, 2], timeout_s=0.5
            )
    assert "may be incomplete" in info.value.hint
    assert ui.names() == ["waiting_ack", "message"]
    assert (await receive(master))[0].outcomes == []  # it was acknowledged meanwhile


async def test_announcement_taken_by_a_concurrent_receive_still_counts(
    server: str, tmp_path: Path
) -> None:
    master = await register(server, tmp_path, "master")
    await link(master, tmp_path, "s1", ack_timeout_s=None)  # the master does not wait...
    summary, _ = await receive(master)  # ...a `receive` run takes the announcement instead
    assert [o.is_new_device for o in summary.outcomes] == [True]
    record = master.store().require_record()
    async with api_for(record, master) as api:
        found = await wait_for_new_device(
            record, api, RecordingUi(), store=master.store(), known=[1], timeout_s=0.3
        )
        assert found == 2
        # A device that announced itself once and was removed since does not count.
        await api.remove_device(2)
        with pytest.raises(TimedOutError):
            await wait_for_new_device(
                record, api, RecordingUi(), store=master.store(), known=[1], timeout_s=0.3
            )


async def test_ack_wait_times_out_when_nobody_announces(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    record = master.store().require_record()
    loop = asyncio.get_running_loop()
    async with api_for(record, master) as api:
        started = loop.time()
        with pytest.raises(TimedOutError):
            await wait_for_new_device(
                record, api, RecordingUi(), store=master.store(), known=[1], timeout_s=0.4
            )
        assert 0.35 < loop.time() - started < 2.0  # cut at the deadline, not a whole second


# -- SENT_MESSAGE ---------------------------------------------------------------------------------


async def test_sent_message_reaches_every_other_device_once(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    s2, _, _ = await link(master, tmp_path, "s2")
    await receive(s1)  # s2's announcement
    devices = {1: master, 2: s1, 3: s2}
    for sender_id, sender in devices.items():
        report = await send(sender, sent_message(OTHER, f"from {sender_id}", 1234))
        assert sorted(report.device_ids) == sorted(set(devices) - {sender_id})
        for receiver_id, receiver in devices.items():
            if receiver_id == sender_id:
                continue
            summary, ui = await receive(receiver)
            assert bodies(summary) == [(sender_id, f"from {sender_id}")]
            sent = ui.fields("message")["control"]["sent"]
            assert sent == {"other_number": OTHER, "timestamp": 1234, "body": f"from {sender_id}"}
            assert (await receive(receiver))[0].outcomes == []  # exactly once


async def test_type_5_until_a_reply_then_type_6(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    # s1 initiated the session: type 5 until it has decrypted something from the master
    assert [d.msg_type for d in (await send(s1)).deliveries] == [5]
    assert [o.msg_type for o in (await receive(master))[0].outcomes] == [5]
    assert [d.msg_type for d in (await send(master)).deliveries] == [6]  # responder: always 6
    await receive(s1)
    assert [d.msg_type for d in (await send(s1)).deliveries] == [6]
    assert [o.msg_type for o in (await receive(master))[0].outcomes] == [6]


# -- what is dropped, and what is not decryptable -------------------------------------------------


async def test_control_from_another_account_is_dropped(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    stranger = await register(server, tmp_path, "stranger", number=OTHER)
    s_record = stranger.store().require_record()
    prekeys_before = len(master.store().require_record().prekeys)
    # A real, well-formed session message from another account's device: it covers every
    # device of the destination, so the server stores it (§4).
    async with api_for(s_record, stranger) as api:
        doc = await api.fetch_keys(NUMBER, "*")
        master_identity = master.store().require_record().identity.public
        bundle = parse_key_bundles(doc, master_identity)[1]
        session = initiate_session(s_record.identity, s_record.registration_id, bundle, os.urandom)
        msg_type, body = encrypt(session, encode_device_control(new_device_registered(s_record)))
        await api.send_messages(
            NUMBER,
            [OutgoingMessage(type=msg_type, destination_device_id=1, body=body,
                             destination_registration_id=bundle.registration_id, timestamp=1)],
        )  # fmt: skip
    summary, ui = await receive(master)
    assert [(o.kind, o.source) for o in summary.outcomes] == [(DROPPED, OTHER)]
    assert ui.fields(DROPPED)["reason"] == "not from a device of this account"
    assert SessionStore(master.store()).load().peers() == []  # never decrypted
    assert len(master.store().require_record().prekeys) == prekeys_before
    assert (await receive(master))[0].outcomes == []  # acknowledged


async def test_bad_mac_is_reported_dropped_and_the_session_rebuilt(
    server: str, tmp_path: Path
) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    await send(master)
    await receive(s1)  # s1 now has a reply: its sends are type 6
    # s1 sends a type-6 message whose MAC is broken (one bit).
    record = s1.store().require_record()
    book = SessionStore(s1.store()).load()
    session = book.session(NUMBER, 1)
    assert session is not None
    _, body = encrypt(session, encode_device_control(sent_message(OTHER, "x")))
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    async with api_for(record, s1) as api:
        await api.send_messages(
            NUMBER,
            [OutgoingMessage(type=6, destination_device_id=1, body=tampered,
                             destination_registration_id=session.remote_registration_id,
                             timestamp=1)],
        )  # fmt: skip
    summary, ui = await receive(master)
    assert [o.kind for o in summary.outcomes] == [UNDECRYPTABLE]
    assert "MAC" in ui.fields(UNDECRYPTABLE)["reason"]
    assert SessionStore(master.store()).load().is_stale(NUMBER, 2)
    assert (await receive(master))[0].outcomes == []  # dropped (acknowledged), as libsignal

    # The master's next send rebuilds its session with device 2 from a fresh bundle, once.
    report = await send(master, sent_message(OTHER, "after repair"))
    assert report.rebuilt == (2,)
    assert [d.msg_type for d in report.deliveries] == [5]
    assert not SessionStore(master.store()).load().is_stale(NUMBER, 2)
    summary, _ = await receive(s1)
    assert bodies(summary) == [(1, "after repair")]
    # and both directions work on the new session
    await send(s1, sent_message(OTHER, "back"))
    assert bodies((await receive(master))[0]) == [(2, "back")]


async def test_redelivery_after_a_lost_ack_is_a_duplicate(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    await send(s1, sent_message(OTHER, "once"))

    class AckFails(ApiClient):
        async def ack_message(self, guid: str) -> None:
            raise ServerUnreachableError("the connection dropped")

    record = master.store().require_record()
    creds = Credentials(record.number, record.password, record.device_id)
    ui = RecordingUi()
    async with AckFails(record.server, creds) as api:
        with pytest.raises(ServerUnreachableError):
            await receive_messages(record, api, ui, store=master.store())
    assert ui.names() == ["message"]  # its effect was committed before the failed ack
    summary, ui = await receive(master)
    assert [o.kind for o in summary.outcomes] == [DUPLICATE]  # not handled twice
    assert (await receive(master))[0].outcomes == []


# -- stale sessions: 410, 404, 409 ----------------------------------------------------------------


async def test_stale_registration_id_410_rebuilds_once(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    # As if device 2 had been re-linked: the stored session names an old registration id.
    with SessionStore(master.store()).update() as book:
        session = book.session(NUMBER, 2)
        assert session is not None
        session.state.remote_registration_id ^= 1
        book.put(NUMBER, 2, session)
    report = await send(master, sent_message(OTHER, "after 410"))
    assert report.rebuilt == (2,)
    assert report.device_ids == [2]
    assert bodies((await receive(s1))[0]) == [(1, "after 410")]


async def test_removed_device_session_is_dropped(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    await link(master, tmp_path, "s1")
    s2, _, _ = await link(master, tmp_path, "s2")
    record = master.store().require_record()
    async with api_for(record, master) as api:
        await api.remove_device(2)
    report = await send(master, sent_message(OTHER, "after removal"))
    assert report.gone == (2,)
    assert report.device_ids == [3]
    assert SessionStore(master.store()).load().peers() == [(NUMBER, 3)]
    assert bodies((await receive(s2))[0])[-1] == (1, "after removal")


async def test_device_removed_between_listing_and_put_404(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    await link(master, tmp_path, "s1")
    s2, _, _ = await link(master, tmp_path, "s2")

    class RemovesFirst(ApiClient):
        """Device 2 goes away right after the sender listed the devices (a real 404)."""

        removed = False

        async def send_messages(self, destination: str, messages: Sequence[OutgoingMessage]) -> None:
            if not RemovesFirst.removed:
                RemovesFirst.removed = True
                await self.remove_device(2)
            await super().send_messages(destination, messages)

    report = await send(master, sent_message(OTHER, "after 404"), api_cls=RemovesFirst)
    assert report.gone == (2,)
    assert report.device_ids == [3]
    assert bodies((await receive(s2))[0])[-1] == (1, "after 404")


async def test_409_mismatch_is_repaired_once_then_raised(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    puts: list[list[int]] = []

    class Mismatch(ApiClient):
        """A server of another design: 409 for the first PUT (device 2 'missing')."""

        async def send_messages(self, destination: str, messages: Sequence[OutgoingMessage]) -> None:
            puts.append([m.destination_device_id for m in messages])
            if len(puts) == 1:
                raise MismatchedDevicesError("409", missing=[2], extra=[])
            await super().send_messages(destination, messages)

    report = await send(master, sent_message(OTHER, "after 409"), api_cls=Mismatch)
    assert puts == [[2], [2]]
    assert report.rebuilt == (2,)
    assert bodies((await receive(s1))[0]) == [(1, "after 409")]

    class AlwaysStale(ApiClient):
        async def send_messages(self, destination: str, messages: Sequence[OutgoingMessage]) -> None:
            puts.append([m.destination_device_id for m in messages])
            raise StaleDevicesError("410", stale=[2])

    puts.clear()
    with pytest.raises(StaleDevicesError):
        await send(master, api_cls=AlwaysStale)
    assert puts == [[2], [2]]  # rebuilt once, then reported


async def test_announce_rebuilds_every_session_from_fresh_bundles(
    server: str, tmp_path: Path
) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    report = await send(s1, new_device_registered(s1.store().require_record()), fresh=True)
    assert report.rebuilt == (1,)
    assert [d.msg_type for d in report.deliveries] == [5]
    assert report.control.type is ControlType.NEW_DEVICE_REGISTERED
    summary, _ = await receive(master)
    assert [(o.kind, o.msg_type) for o in summary.outcomes] == [(MESSAGE, 5)]
    # the master now uses the rebuilt session: its reply decrypts on device 2
    await send(master, sent_message(OTHER, "on the new session"))
    assert bodies((await receive(s1))[0]) == [(1, "on the new session")]


async def test_bundle_of_another_identity_is_refused(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    await register(server, tmp_path, "stranger", number=OTHER)
    record = master.store().require_record()
    async with api_for(record, master) as api:
        assert await fetch_bundles(api, record) == {}  # alone on the account: nobody to tell
        doc = await api.fetch_keys(OTHER, "*")
    with pytest.raises(SessionError):
        parse_key_bundles(doc, record.identity.public)


async def test_sessions_file_holds_no_plaintext(server: str, tmp_path: Path) -> None:
    master = await register(server, tmp_path, "master")
    s1, _, _ = await link(master, tmp_path, "s1")
    await send(s1, sent_message(OTHER, "very secret body"))
    assert bodies((await receive(master))[0]) == [(2, "very secret body")]
    for config in (master, s1):
        text = (Path(config.data_dir or "") / SESSIONS_FILE).read_text()
        assert "very secret body" not in text
        assert list(sessions_doc(config)["sessions"][NUMBER]) == ["2" if config is master else "1"]
