"""Receiving: fetch, decrypt, act on, report and acknowledge messages (§4, §7).

Each message goes through ``Receiver.handle`` in this order:

1. under the folder lock: decrypt with the sender's session (type 5 builds or
   rebuilds it and names the one-time prekey it used), act on the DeviceControl
   (NEW_DEVICE_REGISTERED: remember the device), and commit — the session, the
   message's guid among the processed ones, then the used prekey deleted;
2. report it to the ``Ui`` (event ``message``, ``dropped``, ``undecryptable`` or
   ``duplicate``);
3. ``DELETE /v1/messages/{guid}``.

Committing before the acknowledgement means a crash never loses a message's
effect; the server then delivers it again, and the stored guid (or, failing
that, the ratchet's own duplicate check) makes it a ``duplicate``, acknowledged
without acting twice. A crash between the commit and the report loses only the
report.

What is dropped (acknowledged, reported, never acted on): anything not from a
device of our own account (§7, last rule: it is not even decrypted), a message
type other than 5 and 6, a message claiming to come from this device, a
NEW_DEVICE_REGISTERED naming another device than its sender.
What is undecryptable (acknowledged and reported, as libsignal drops them):
a bad MAC, an unknown prekey, no session for a type 6, another identity key.
The sender's session is then marked stale, so our next send to that device
rebuilds it from a fresh bundle; keeping the message would only make it fail
again on every run and hold up the ones behind it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from textsecure_provision.clock import now_ms
from textsecure_provision.crypto.keys import KeyPair, Rng
from textsecure_provision.deadlines import within
from textsecure_provision.errors import (
    DuplicateMessageError,
    InvalidInputError,
    MessageFormatError,
    NotFoundError,
    RemoteProtocolError,
    SessionError,
)
from textsecure_provision.flows.ui import Ui
from textsecure_provision.protocol.bodies import IncomingMessage, convert
from textsecure_provision.protocol.messages import (
    ControlType,
    DeviceControlMessage,
    decode_device_control,
)
from textsecure_provision.protocol.session import (
    PREKEY_MESSAGE_TYPE,
    WHISPER_MESSAGE_TYPE,
    Session,
    decrypt_message,
    decrypt_prekey_message,
)
from textsecure_provision.store import DeviceRecord, DeviceStore
from textsecure_provision.store.sessions import KnownDevice, SessionBook, SessionStore
from textsecure_provision.transport.api import ApiClient

log = logging.getLogger(__name__)

MAX_POLL_S: Final = 30
"""One long-poll asks the server to wait at most this long (it clamps to its own maximum)."""

MESSAGE: Final = "message"
DROPPED: Final = "dropped"
UNDECRYPTABLE: Final = "undecryptable"
DUPLICATE: Final = "duplicate"


@dataclass(frozen=True)
class Incoming:
    """One stored message as ``GET /v1/messages/`` returns it (§4)."""

    guid: str
    msg_type: int
    source: str
    source_device: int
    timestamp: int
    body: bytes = field(repr=False)


def parse_incoming(doc: dict[str, Any]) -> Incoming:
    """One message of the batch, decoded on its own: a malformed one is dropped alone."""
    message = convert(doc, IncomingMessage)
    return Incoming(
        guid=message.guid,
        msg_type=message.type,
        source=message.source,
        source_device=message.source_device,
        timestamp=message.timestamp,
        body=message.body,
    )


@dataclass(frozen=True)
class Outcome:
    """What became of one message; ``kind`` is also its ``--json`` event name."""

    kind: str
    guid: str
    source: str | None = None
    source_device: int | None = None
    msg_type: int | None = None
    timestamp: int | None = None
    control: DeviceControlMessage | None = None
    reason: str | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "guid": self.guid,
            "source": self.source,
            "source_device": self.source_device,
            "message_type": self.msg_type,
            "timestamp": self.timestamp,
        }
        if self.control is not None:
            out["control"] = self.control.to_json()
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    def describe(self) -> str:
        sender = f"device {self.source_device} of {self.source}"
        if self.kind == MESSAGE and self.control is not None:
            control = self.control
            if control.type is ControlType.NEW_DEVICE_REGISTERED:
                return f"From {sender}: new device {control.new_device_id} registered."
            if control.sent is not None:
                sent = control.sent
                return (
                    f"From {sender}: sent to {sent.other_number} "
                    f"(timestamp {sent.timestamp}): {sent.body}"
                )
            return f"From {sender}: a DeviceControl of type {control.type.name}."
        if self.kind == DUPLICATE:
            return f"Skipped a message from {sender}: already handled."
        return f"Dropped a message from {sender}: {self.reason}."

    @property
    def is_new_device(self) -> bool:
        return (
            self.kind == MESSAGE
            and self.control is not None
            and self.control.type is ControlType.NEW_DEVICE_REGISTERED
        )


@dataclass
class ReceiveSummary:
    counts: dict[str, int] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.kind] = self.counts.get(outcome.kind, 0) + 1
        self.outcomes.append(outcome)

    def count(self, kind: str) -> int:
        return self.counts.get(kind, 0)


class Receiver:
    """Handles this device's messages one by one (see the module docstring for the order)."""

    def __init__(
        self,
        record: DeviceRecord,
        api: ApiClient,
        ui: Ui,
        *,
        store: DeviceStore,
        rng: Rng = secrets.token_bytes,
    ) -> None:
        self.record = record
        self.api = api
        self.ui = ui
        self.sessions = SessionStore(store)
        self.rng = rng

    # -- fetching ------------------------------------------------------------------------------
    async def poll(self, deadline: float | None = None) -> tuple[list[dict[str, Any]], bool]:
        """One ``GET /v1/messages/``; with a ``deadline`` (loop time) long-poll until then.

        The server takes whole seconds, so the request is also cut at the deadline itself:
        an unanswered fetch loses nothing (messages stay until acknowledged).
        """
        loop = asyncio.get_running_loop()
        remaining = 0.0 if deadline is None else deadline - loop.time()
        if remaining <= 0:
            return await self.api.fetch_messages(None)
        wait = min(MAX_POLL_S, math.ceil(remaining))
        try:
            return await within(self.api.fetch_messages(wait), remaining)
        except TimeoutError:
            return [], False

    # -- one message --------------------------------------------------------------------------
    async def handle(self, doc: dict[str, Any]) -> Outcome:
        guid = doc.get("guid")
        if not isinstance(guid, str) or not guid:
            raise RemoteProtocolError("the server sent a message without a guid")
        try:
            incoming = parse_incoming(doc)
        except InvalidInputError as exc:
            outcome = Outcome(DROPPED, guid, reason=f"malformed envelope ({exc.message})")
        else:
            with self.sessions.update() as book:
                outcome = self._process(book, incoming)
                used = set(book.used_prekeys)
            if used:  # committed: forget the private keys here too
                self.record = dataclasses.replace(
                    self.record,
                    prekeys=tuple(k for k in self.record.prekeys if k.key_id not in used),
                )
        self._report(outcome)
        try:
            await self.api.ack_message(guid)
        except NotFoundError:
            log.info("message already acknowledged (by another process)")
        return outcome

    def _process(self, book: SessionBook, m: Incoming) -> Outcome:
        def outcome(kind: str, **kw: Any) -> Outcome:
            return Outcome(kind, m.guid, m.source, m.source_device, m.msg_type, m.timestamp, **kw)

        if book.was_processed(m.guid):
            return outcome(DUPLICATE, reason="already handled")
        if m.source != self.record.number:
            return outcome(DROPPED, reason="not from a device of this account")
        if m.source_device == self.record.device_id:
            return outcome(DROPPED, reason="claims to come from this device")
        if m.msg_type not in (PREKEY_MESSAGE_TYPE, WHISPER_MESSAGE_TYPE):
            return outcome(DROPPED, reason=f"unsupported message type {m.msg_type}")
        number, device_id = m.source, m.source_device
        try:
            session, plaintext = self._decrypt(book, m)
        except DuplicateMessageError:
            book.mark_processed(m.guid)
            return outcome(DUPLICATE, reason="already handled")
        except SessionError as exc:
            book.mark_processed(m.guid)
            book.mark_stale(number, device_id)  # our next send rebuilds it (module doc)
            return outcome(UNDECRYPTABLE, reason=exc.message)
        book.put(number, device_id, session)
        book.mark_processed(m.guid)
        try:
            control = decode_device_control(plaintext)
        except MessageFormatError as exc:
            return outcome(UNDECRYPTABLE, reason=exc.message)
        if control.type is ControlType.NEW_DEVICE_REGISTERED:
            if control.new_device_id != device_id:
                return outcome(
                    DROPPED,
                    control=control,
                    reason="NEW_DEVICE_REGISTERED names another device than its sender",
                )
            book.record_device(KnownDevice(device_id, session.remote_registration_id, now_ms()))
        return outcome(MESSAGE, control=control)

    def _decrypt(self, book: SessionBook, m: Incoming) -> tuple[Session, bytes]:
        record = self.record
        existing = book.session(m.source, m.source_device)
        if m.msg_type == PREKEY_MESSAGE_TYPE:
            signed = record.signed_prekey
            one_time: dict[int, KeyPair] = {k.key_id: k.key_pair for k in record.prekeys}
            if record.last_resort_key is not None:
                one_time.setdefault(record.last_resort_key.key_id, record.last_resort_key.key_pair)
            result = decrypt_prekey_message(
                existing,
                m.body,
                our_identity=record.identity,
                our_registration_id=record.registration_id,
                signed_prekeys=lambda i: signed.key_pair if i == signed.key_id else None,
                one_time_prekeys=one_time.get,
                rng=self.rng,
                expected_identity=record.identity.public,  # §7: only our own account
            )
            book.use_prekey(result.used_prekey_id)
            return result.session, result.plaintext
        if existing is None:
            raise SessionError("there is no session with that device")
        return existing, decrypt_message(existing, m.body, rng=self.rng)

    def _report(self, outcome: Outcome) -> None:
        if outcome.kind == MESSAGE:
            self.ui.result(MESSAGE, outcome.describe(), **outcome.fields())
        else:
            self.ui.event(outcome.kind, outcome.describe(), **outcome.fields())


async def receive_messages(
    record: DeviceRecord,
    api: ApiClient,
    ui: Ui,
    *,
    store: DeviceStore,
    wait_s: float = 0.0,
    rng: Rng = secrets.token_bytes,
) -> ReceiveSummary:
    """Handle every pending message; with none pending, wait up to ``wait_s`` for the first."""
    receiver = Receiver(record, api, ui, store=store, rng=rng)
    summary = ReceiveSummary()
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        docs, more = await receiver.poll(None if summary.outcomes else deadline)
        for doc in docs:
            summary.add(await receiver.handle(doc))
        if more and docs:
            continue
        if summary.outcomes or asyncio.get_running_loop().time() >= deadline:
            return summary
