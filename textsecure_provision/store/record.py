"""What a linked device keeps: ``DeviceRecord`` and ``PendingLink``, as JSON.

``encode_*`` / ``decode_*`` are pure; files are written by ``store.py``.
Binary values are padded base64 (§2). A record that does not decode is a
``StoreError`` (exit 9): the folder is corrupt, not the user's input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from textsecure_provision.crypto.keys import KeyPair, PublicKey
from textsecure_provision.errors import InvalidInputError, StoreError
from textsecure_provision.protocol.encoding import b64decode, b64encode, parse_phone_number
from textsecure_provision.protocol.messages import (
    decode_identity_key_pair,
    encode_identity_key_pair,
)
from textsecure_provision.protocol.prekeys import PreKey, SignedPreKey

RECORD_VERSION = 1
PENDING_VERSION = 1


@dataclass(frozen=True)
class DeviceRecord:
    """This device's account, credentials and keys (everything needed to act as it)."""

    number: str
    device_id: int
    password: str = field(repr=False)
    server: str
    registration_id: int
    identity: KeyPair = field(repr=False)
    signed_prekey: SignedPreKey = field(repr=False)
    prekeys: tuple[PreKey, ...] = field(repr=False)
    last_resort_key: PreKey | None = field(default=None, repr=False)
    trusted_servers: tuple[str, ...] = ()
    name: str | None = None
    created_ms: int = 0

    @property
    def is_master(self) -> bool:
        return self.device_id == 1


@dataclass(frozen=True)
class PendingLink:
    """A DeviceInit received by ``secondary listen --no-verify``, not yet acted on.

    It keeps the raw DeviceInit and the channel's ephemeral key rather than the
    opened payload, so ``provision verify`` opens and checks it again exactly as
    ``listen`` would have (§5, §8), through the same code path.
    """

    device_init: bytes = field(repr=False)
    ephemeral: KeyPair = field(repr=False)
    channel_server: str
    trusted_servers: tuple[str, ...]
    received_ms: int
    expires_ms: int
    name: str | None = None


# -- encoding ---------------------------------------------------------------------------------


def _key_pair(pair: KeyPair) -> dict[str, str]:
    return {
        "public": b64encode(pair.public.serialize()),
        "private": b64encode(pair.private.serialize()),
    }


def _prekey(key: PreKey) -> dict[str, Any]:
    return {"key_id": key.key_id, **_key_pair(key.key_pair)}


def encode_record(record: DeviceRecord) -> bytes:
    doc = {
        "version": RECORD_VERSION,
        "number": record.number,
        "device_id": record.device_id,
        "password": record.password,
        "server": record.server,
        "registration_id": record.registration_id,
        "identity_key_pair": b64encode(encode_identity_key_pair(record.identity)),
        "signed_prekey": {
            **_prekey(PreKey(record.signed_prekey.key_id, record.signed_prekey.key_pair)),
            "signature": b64encode(record.signed_prekey.signature),
        },
        "prekeys": [_prekey(k) for k in record.prekeys],
        "last_resort_key": _prekey(record.last_resort_key) if record.last_resort_key else None,
        "trusted_servers": list(record.trusted_servers),
        "name": record.name,
        "created_ms": record.created_ms,
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


def drop_prekeys(data: bytes, key_ids: set[int], what: str = "the device record") -> bytes | None:
    """``data`` (an encoded record) without the one-time prekeys ``key_ids``; None if it holds
    none of them.

    An edit of the JSON, not a decode and re-encode: decoding checks every key pair (a
    scalar multiplication each, ~6 ms for 100 prekeys), and this runs between a received
    message's commit and its acknowledgement (B2). Everything else is kept as it is, in
    ``encode_record``'s layout; a document without a usable prekey list is ``StoreError``,
    as decoding would find.
    """
    doc = _load(data, what, RECORD_VERSION)
    prekeys = doc.get("prekeys", list)
    if not all(isinstance(k, dict) for k in prekeys):
        raise StoreError(f"{what} is corrupt (field 'prekeys')")
    kept = [k for k in prekeys if _Doc(k, f"{what} (prekeys)").get("key_id", int) not in key_ids]
    if len(kept) == len(prekeys):
        return None
    return (json.dumps({**doc.doc, "prekeys": kept}, indent=1) + "\n").encode()


def encode_pending(pending: PendingLink) -> bytes:
    doc = {
        "version": PENDING_VERSION,
        "device_init": b64encode(pending.device_init),
        "ephemeral": _key_pair(pending.ephemeral),
        "channel_server": pending.channel_server,
        "trusted_servers": list(pending.trusted_servers),
        "received_ms": pending.received_ms,
        "expires_ms": pending.expires_ms,
        "name": pending.name,
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


# -- decoding ---------------------------------------------------------------------------------


class _Doc:
    """Typed access to a decoded JSON object; any surprise is a ``StoreError``."""

    def __init__(self, doc: object, what: str) -> None:
        if not isinstance(doc, dict):
            raise StoreError(f"{what} is corrupt (not a JSON object)")
        self.doc = doc
        self.what = what

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        value = self.doc.get(key)
        if value is None and optional:
            return None
        # bool is an int in Python; an int field must not hold true/false
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise StoreError(f"{self.what} is corrupt (field {key!r})")
        return value

    def b64(self, key: str) -> bytes:
        try:
            return b64decode(self.get(key, str), name=key)
        except InvalidInputError as exc:
            raise StoreError(f"{self.what} is corrupt (field {key!r})") from exc


def _load(data: bytes, what: str, version: int) -> _Doc:
    try:
        doc = _Doc(json.loads(data), what)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        raise StoreError(f"{what} is corrupt (not JSON)") from exc
    if doc.get("version", int) != version:
        raise StoreError(f"{what} has an unknown format version")
    return doc


def _decode_key_pair(doc: _Doc, field_name: str) -> KeyPair:
    sub = _Doc(doc.get(field_name, dict), f"{doc.what} ({field_name})")
    try:
        pair = KeyPair.from_private(sub.b64("private"))
        if PublicKey.from_bytes(sub.b64("public")) != pair.public:
            raise StoreError(f"{doc.what} is corrupt ({field_name}: key pair mismatch)")
    except InvalidInputError as exc:
        raise StoreError(f"{doc.what} is corrupt ({field_name})") from exc
    return pair


def _decode_prekey(doc: _Doc) -> PreKey:
    return PreKey(doc.get("key_id", int), _decode_key_pair(_Doc({"k": doc.doc}, doc.what), "k"))


def decode_record(data: bytes, what: str = "the device record") -> DeviceRecord:
    doc = _load(data, what, RECORD_VERSION)
    try:
        number = parse_phone_number(doc.get("number", str))
        identity = decode_identity_key_pair(doc.b64("identity_key_pair"))
    except InvalidInputError as exc:
        raise StoreError(f"{what} is corrupt ({exc.message})") from exc
    spk_doc = _Doc(doc.get("signed_prekey", dict), f"{what} (signed_prekey)")
    spk = _decode_prekey(spk_doc)
    signed = SignedPreKey(spk.key_id, spk.key_pair, spk_doc.b64("signature"))
    prekeys = tuple(_decode_prekey(_Doc(k, f"{what} (prekeys)")) for k in doc.get("prekeys", list))
    last = doc.get("last_resort_key", dict, optional=True)
    trusted = doc.get("trusted_servers", list)
    if not all(isinstance(t, str) for t in trusted):
        raise StoreError(f"{what} is corrupt (field 'trusted_servers')")
    return DeviceRecord(
        number=number,
        device_id=doc.get("device_id", int),
        password=doc.get("password", str),
        server=doc.get("server", str),
        registration_id=doc.get("registration_id", int),
        identity=identity,
        signed_prekey=signed,
        prekeys=prekeys,
        last_resort_key=_decode_prekey(_Doc(last, what)) if last is not None else None,
        trusted_servers=tuple(trusted),
        name=doc.get("name", str, optional=True),
        created_ms=doc.get("created_ms", int),
    )


def decode_pending(data: bytes, what: str = "the pending link") -> PendingLink:
    doc = _load(data, what, PENDING_VERSION)
    trusted = doc.get("trusted_servers", list)
    if not all(isinstance(t, str) for t in trusted):
        raise StoreError(f"{what} is corrupt (field 'trusted_servers')")
    return PendingLink(
        device_init=doc.b64("device_init"),
        ephemeral=_decode_key_pair(doc, "ephemeral"),
        channel_server=doc.get("channel_server", str),
        trusted_servers=tuple(trusted),
        received_ms=doc.get("received_ms", int),
        expires_ms=doc.get("expires_ms", int),
        name=doc.get("name", str, optional=True),
    )
