"""Provisioning, pure: the DeviceInit as a whole, and each side's steps as a state machine (§1).

``seal_device_init`` / ``open_device_init`` compose the envelope (crypto/) with
the protobufs (messages.py). The machines hold no I/O: the flow feeds them what
happened and they refuse any step out of order, so a flow can never, say,
register before the user confirmed the number (§1 step 6) or store before the
keys were uploaded (§8: nothing half-done).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from textsecure_provision.crypto import envelope
from textsecure_provision.crypto.keys import KeyPair, PublicKey, Rng
from textsecure_provision.errors import (
    MessageFormatError,
    NumberMismatchError,
    ProvisionError,
)
from textsecure_provision.protocol.messages import (
    DeviceInitMessage,
    IdentityKeyPayload,
    decode_device_init,
    decode_identity_key,
    encode_device_init,
    encode_identity_key,
)
from textsecure_provision.protocol.trust import check_trusted

# -- the DeviceInit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SealedInit:
    device_init: bytes
    envelope: envelope.SealedEnvelope = field(repr=False)

    @property
    def confirmation(self) -> str:
        return self.envelope.confirmation


@dataclass(frozen=True)
class OpenedInit:
    payload: IdentityKeyPayload
    envelope: envelope.OpenedEnvelope = field(repr=False)

    @property
    def confirmation(self) -> str:
        return self.envelope.confirmation


def seal_device_init(
    payload: IdentityKeyPayload, their_key: PublicKey, rng: Rng = secrets.token_bytes
) -> SealedInit:
    """Master side of §5: the serialized DeviceInit to PUT on the channel."""
    sealed = envelope.seal(encode_identity_key(payload), their_key, rng)
    message = DeviceInitMessage(sealed.master_ephemeral, sealed.identity_key_message)
    return SealedInit(encode_device_init(message), sealed)


def open_device_init(device_init: bytes, our_key: KeyPair) -> OpenedInit:
    """Secondary side of §5. Raises ``MessageFormatError`` or ``EnvelopeError``."""
    message = decode_device_init(device_init)
    opened = envelope.open_envelope(message.master_ephemeral, message.identity_key_message, our_key)
    return OpenedInit(decode_identity_key(opened.plaintext), opened)


def check_identity_pair(pair: KeyPair) -> None:
    """The identity public key must belong to its private key, or every signature
    this device makes would be refused after it registered (nothing half-done, §8)."""
    if pair.private.public_key() != pair.public:
        raise MessageFormatError("the identity public key does not match its private key")


# -- the machines -----------------------------------------------------------------------------


class StepError(RuntimeError):
    """A provisioning step was attempted out of order: a bug in the caller, not a user's error.

    Not a ``ProvisionError`` on purpose: no input of the user's or the peer's can cause it, so
    the CLI reports it as the bug it is (exit 1, "unexpected error").
    """


class SecondaryState(enum.Enum):
    WAITING = "waiting for a DeviceInit on the channel"
    RECEIVED = "DeviceInit opened; the phone number is not confirmed yet"
    CONFIRMED = "the user confirmed the number; may register"
    REGISTERED = "the server gave a device id; keys not uploaded"
    KEYS_UPLOADED = "keys uploaded; may be stored"
    DONE = "stored"
    FAILED = "failed; start again from a new channel"


class SecondaryEvent(enum.Enum):
    RECEIVE = "receive"
    CONFIRM = "confirm"
    REGISTER = "register"
    UPLOAD_KEYS = "upload_keys"
    COMMIT = "commit"
    FAIL = "fail"


S, E = SecondaryState, SecondaryEvent
# Every legal step, and nothing else (§1 steps 5-6). FAIL is legal from any live state.
SECONDARY_TRANSITIONS: dict[tuple[SecondaryState, SecondaryEvent], SecondaryState] = {
    (S.WAITING, E.RECEIVE): S.RECEIVED,
    (S.RECEIVED, E.CONFIRM): S.CONFIRMED,
    (S.CONFIRMED, E.REGISTER): S.REGISTERED,
    (S.REGISTERED, E.UPLOAD_KEYS): S.KEYS_UPLOADED,
    (S.KEYS_UPLOADED, E.COMMIT): S.DONE,
    **{(state, E.FAIL): S.FAILED for state in S if state not in (S.DONE, S.FAILED)},
}


@dataclass
class SecondaryLink:
    """The secondary's side of one link attempt: an ephemeral key and the steps taken."""

    ephemeral: KeyPair = field(repr=False)
    trusted_servers: tuple[str, ...]
    state: SecondaryState = SecondaryState.WAITING
    opened: OpenedInit | None = field(default=None, repr=False)

    @classmethod
    def start(cls, trusted_servers: Iterable[str], rng: Rng = secrets.token_bytes) -> SecondaryLink:
        return cls(KeyPair.generate(rng), tuple(trusted_servers))

    def _step(self, event: SecondaryEvent) -> None:
        nxt = SECONDARY_TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise StepError(f"cannot {event.value} while {self.state.value}")
        self.state = nxt

    def receive(self, device_init: bytes) -> OpenedInit:
        """Open the DeviceInit and check its server (§5, §8). Any failure ends the attempt."""
        if self.state is not SecondaryState.WAITING:
            raise StepError(f"cannot receive while {self.state.value}")
        try:
            opened = open_device_init(device_init, self.ephemeral)
            check_identity_pair(opened.payload.identity_key_pair)
            check_trusted(opened.payload.server, self.trusted_servers)
        except ProvisionError:
            self._step(SecondaryEvent.FAIL)
            raise
        self._step(SecondaryEvent.RECEIVE)
        self.opened = opened
        return opened

    def confirm_number(self, number: str) -> IdentityKeyPayload:
        """The user's answer to "is this your number?"; a mismatch ends the attempt."""
        if self.opened is None or self.state is not SecondaryState.RECEIVED:
            raise StepError(f"cannot confirm while {self.state.value}")
        if number != self.opened.payload.phone_number:
            self._step(SecondaryEvent.FAIL)
            raise NumberMismatchError("the phone number in the link is not the one you expected")
        self._step(SecondaryEvent.CONFIRM)
        return self.opened.payload

    def registered(self) -> None:
        self._step(SecondaryEvent.REGISTER)

    def keys_uploaded(self) -> None:
        self._step(SecondaryEvent.UPLOAD_KEYS)

    def committed(self) -> None:
        self._step(SecondaryEvent.COMMIT)

    def fail(self) -> None:
        if self.state not in (SecondaryState.DONE, SecondaryState.FAILED):
            self._step(SecondaryEvent.FAIL)
