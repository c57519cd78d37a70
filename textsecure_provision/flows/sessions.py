"""Sending a DeviceControl to the account's other devices (§1 steps 7 and 8, §7).

``send_control`` encrypts one DeviceControl per device over its session and
sends them all in one ``PUT /v1/messages/{own number}``. Sessions are built
from ``GET /v1/keys/{number}/{device}`` bundles where missing (or marked stale
after an undecryptable message), and every session is committed to the store
*before* the PUT: a crash after the PUT must never make us reuse a message key.

The type (5 until the session has had a reply, then 6) is the session layer's
decision, not ours.

Stale sessions (§7): a 410 (the device's registration id changed: re-linked),
a 409 (missing or extra devices; the server never sends it within one account,
but a second server might) or a 404 (a device was removed meanwhile) is
repaired once — fresh bundles for the named devices, sessions rebuilt with
``initiate_session(previous=old)``, removed devices' sessions dropped — and the
PUT is sent again. A second refusal is raised as is (exit 7).

``announce_device`` is step 7 for a new device: NEW_DEVICE_REGISTERED to every
other device, over sessions rebuilt from fresh bundles (``GET .../*``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textsecure_provision.clock import now_ms
from textsecure_provision.crypto.keys import PublicKey, Rng
from textsecure_provision.errors import (
    MismatchedDevicesError,
    NotFoundError,
    ProvisionError,
    SessionError,
    StaleDevicesError,
)
from textsecure_provision.flows.ui import Ui
from textsecure_provision.protocol.bodies import KeyBundles, OutgoingMessage
from textsecure_provision.protocol.messages import (
    ControlType,
    DeviceControlMessage,
    SentMessage,
    encode_device_control,
)
from textsecure_provision.protocol.session import PreKeyBundle, Session, encrypt, initiate_session
from textsecure_provision.store import DeviceRecord, DeviceStore
from textsecure_provision.store.sessions import SessionBook, SessionStore
from textsecure_provision.transport.api import ApiClient

if TYPE_CHECKING:
    from textsecure_provision.flows.secondary import LinkedHook

ANNOUNCE_HINT = (
    "This device is linked, but the other devices were not told. "
    "Run `provision send-control new-device-registered` to announce it again."
)


# -- bundles (GET /v1/keys/{number}/{device}, §4; decoded by the transport) -------------------


def parse_key_bundles(doc: KeyBundles, expected_identity: PublicKey) -> dict[int, PreKeyBundle]:
    """Device id → ``PreKeyBundle``. Every device of one account shares its identity key (§7),
    so a bundle with another identity key is refused (``SessionError``): it is not ours."""
    identity = PublicKey.from_bytes(doc.identity_key, name="identityKey")
    if identity != expected_identity:
        raise SessionError("the server's key bundle does not carry this account's identity key")
    out: dict[int, PreKeyBundle] = {}
    for device in doc.devices:
        spk, pre = device.signed_pre_key, device.pre_key
        out[device.device_id] = PreKeyBundle(
            identity_key=identity,
            registration_id=device.registration_id,
            signed_prekey_id=spk.key_id,
            signed_prekey=PublicKey.from_bytes(spk.public_key, name="publicKey"),
            signed_prekey_signature=spk.signature,
            prekey_id=None if pre is None else pre.key_id,
            prekey=None if pre is None else PublicKey.from_bytes(pre.public_key, name="publicKey"),
        )
    return out


async def fetch_bundles(
    api: ApiClient, record: DeviceRecord, devices: Iterable[int] | None = None
) -> dict[int, PreKeyBundle]:
    """Fresh bundles of our own account's devices: all others (``None``, one ``GET .../*``) or
    the given ones (one GET each, at once). A device without keys is simply absent."""
    if devices is None:
        try:
            doc = await api.fetch_keys(record.number, "*")
        except NotFoundError:
            return {}  # no other device has keys (yet)
        bundles = parse_key_bundles(doc, record.identity.public)
        bundles.pop(record.device_id, None)
        return bundles

    async def one(device_id: int) -> dict[int, PreKeyBundle]:
        try:
            doc = await api.fetch_keys(record.number, device_id)
        except NotFoundError:
            return {}
        return {
            d: b
            for d, b in parse_key_bundles(doc, record.identity.public).items()
            if d == device_id
        }

    out: dict[int, PreKeyBundle] = {}
    for part in await asyncio.gather(*(one(d) for d in sorted(set(devices)))):
        out.update(part)
    return out


# -- sending ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    device_id: int
    msg_type: int
    """5 (PreKeyWhisperMessage) or 6 (WhisperMessage), as the session decided."""


@dataclass(frozen=True)
class SendReport:
    control: DeviceControlMessage
    deliveries: tuple[Delivery, ...]
    rebuilt: tuple[int, ...] = ()
    """Devices whose session was rebuilt from a fresh bundle (stale, 409 or 410)."""
    gone: tuple[int, ...] = ()
    """Devices no longer on the account; their sessions were dropped."""
    skipped: tuple[int, ...] = ()
    """Devices on the account with no keys on the server (not linked to the end yet)."""

    @property
    def device_ids(self) -> list[int]:
        return [d.device_id for d in self.deliveries]

    def to_json(self) -> dict[str, Any]:
        return {
            "control": self.control.to_json(),
            "devices": [{"device_id": d.device_id, "type": d.msg_type} for d in self.deliveries],
            "rebuilt": list(self.rebuilt),
            "gone": list(self.gone),
            "skipped": list(self.skipped),
        }


@dataclass
class _Send:
    record: DeviceRecord
    api: ApiClient
    sessions: SessionStore
    rng: Rng
    plaintext: bytes = field(repr=False)
    timestamp: int
    entries: dict[int, OutgoingMessage] = field(default_factory=dict)
    types: dict[int, int] = field(default_factory=dict)
    rebuilt: set[int] = field(default_factory=set)
    gone: set[int] = field(default_factory=set)
    skipped: set[int] = field(default_factory=set)

    def encrypt_for(
        self,
        book: SessionBook,
        targets: Iterable[int],
        bundles: dict[int, PreKeyBundle],
    ) -> None:
        """Encrypt for each target (building sessions from ``bundles`` where given)."""
        number = self.record.number
        for device_id in targets:
            session: Session | None = book.session(number, device_id)
            if device_id in bundles:
                session = initiate_session(
                    self.record.identity,
                    self.record.registration_id,
                    bundles[device_id],
                    self.rng,
                    previous=session,
                )
            if session is None:
                continue  # pragma: no cover - callers fetch a bundle for every missing session
            msg_type, body = encrypt(session, self.plaintext)
            book.put(number, device_id, session)
            self.types[device_id] = msg_type
            self.entries[device_id] = OutgoingMessage(
                type=msg_type,
                destination_device_id=device_id,
                destination_registration_id=session.remote_registration_id,
                body=body,
                timestamp=self.timestamp,
            )

    def forget(self, book: SessionBook, devices: Iterable[int]) -> None:
        for device_id in devices:
            book.drop(self.record.number, device_id)
            self.entries.pop(device_id, None)
            self.types.pop(device_id, None)
            self.gone.add(device_id)

    async def put(self) -> None:
        await self.api.send_messages(self.record.number, list(self.entries.values()))

    async def repair(self, exc: ProvisionError) -> None:
        """One round of stale-session handling after a refused PUT (see the module doc)."""
        rebuild: set[int] = set()
        remove: set[int] = set()
        if isinstance(exc, StaleDevicesError):
            rebuild = set(exc.stale) or set(self.entries)
        elif isinstance(exc, MismatchedDevicesError):
            rebuild, remove = set(exc.missing), set(exc.extra)
        elif isinstance(exc, NotFoundError):
            listed = {d.id for d in await self.api.fetch_devices()}
            remove = set(self.entries) - listed
            if not remove:
                raise exc
        bundles = await fetch_bundles(self.api, self.record, rebuild) if rebuild else {}
        remove |= rebuild - set(bundles)  # a device with no keys any more is gone for us
        with self.sessions.update() as book:
            self.forget(book, remove)
            self.encrypt_for(book, sorted(bundles), bundles)
        self.rebuilt |= set(bundles)


async def send_control(
    record: DeviceRecord,
    api: ApiClient,
    control: DeviceControlMessage,
    *,
    store: DeviceStore,
    rng: Rng = secrets.token_bytes,
    fresh_sessions: bool = False,
) -> SendReport:
    """Send ``control`` to every other device of the account, one message each (§7).

    ``fresh_sessions``: rebuild every session from a fresh bundle (``GET .../*``), as a
    new (or re-announcing) device does; otherwise existing sessions are used and only
    missing or stale ones are built, for the devices ``GET /v1/devices/`` lists.
    """
    sessions = SessionStore(store)
    job = _Send(record, api, sessions, rng, encode_device_control(control), now_ms())
    number = record.number
    if fresh_sessions:
        bundles = await fetch_bundles(api, record)
        targets = sorted(bundles)
        job.rebuilt |= {d for d in targets if sessions.load().session(number, d) is not None}
    else:
        listed = {d.id for d in await api.fetch_devices()} - {record.device_id}
        book = sessions.load()
        job.gone = {d for n, d in book.peers() if n == number and d not in listed}
        need = {d for d in listed if book.session(number, d) is None or book.is_stale(number, d)}
        bundles = await fetch_bundles(api, record, need) if need else {}
        job.skipped = need - set(bundles)
        job.rebuilt = {d for d in bundles if book.session(number, d) is not None}
        targets = sorted(listed - job.skipped)
    with sessions.update() as book:
        for device_id in job.gone:
            book.drop(number, device_id)
        job.encrypt_for(book, targets, bundles)
    if job.entries:
        try:
            await job.put()
        except (StaleDevicesError, MismatchedDevicesError, NotFoundError) as exc:
            await job.repair(exc)
            if job.entries:
                await job.put()  # a second refusal is raised as is (exit 7)
    return SendReport(
        control=control,
        deliveries=tuple(Delivery(d, job.types[d]) for d in sorted(job.entries)),
        rebuilt=tuple(sorted(job.rebuilt & set(job.entries))),
        gone=tuple(sorted(job.gone)),
        skipped=tuple(sorted(job.skipped)),
    )


def new_device_registered(record: DeviceRecord) -> DeviceControlMessage:
    return DeviceControlMessage(ControlType.NEW_DEVICE_REGISTERED, new_device_id=record.device_id)


def sent_message(
    other_number: str, body: str, timestamp: int | None = None
) -> DeviceControlMessage:
    return DeviceControlMessage(
        ControlType.SENT_MESSAGE,
        sent=SentMessage(other_number, now_ms() if timestamp is None else timestamp, body),
    )


async def announce_device(
    record: DeviceRecord,
    api: ApiClient,
    ui: Ui,
    *,
    store: DeviceStore,
    rng: Rng = secrets.token_bytes,
) -> SendReport:
    """§1 step 7 on the new device: NEW_DEVICE_REGISTERED to every other device, type 5."""
    report = await send_control(
        record, api, new_device_registered(record), store=store, rng=rng, fresh_sessions=True
    )
    ids = ", ".join(str(d) for d in report.device_ids) or "none"
    ui.event(
        "announced",
        f"Told the account's other devices about this one (devices: {ids}).",
        device_id=record.device_id,
        devices=report.device_ids,
    )
    return report


def linked_hook(store: DeviceStore, *, rng: Rng = secrets.token_bytes) -> LinkedHook:
    """The ``on_linked`` hook of the secondary's flows: announce, with a useful hint on failure.

    The device is stored and registered by then, so a failure here does not undo the link;
    the error keeps its class (and exit code) and says how to announce again.
    """

    async def on_linked(record: DeviceRecord, api: ApiClient, ui: Ui) -> None:
        try:
            await announce_device(record, api, ui, store=store, rng=rng)
        except ProvisionError as exc:
            raise exc.with_hint(ANNOUNCE_HINT) from exc

    return on_linked
