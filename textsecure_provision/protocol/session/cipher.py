"""Session operations over whole records: start, encrypt, decrypt (§7, steps 7 and 8 of §1).

Sans-I/O: the caller loads a ``Session`` from its store, calls one of these, and persists
``session.to_dict()`` afterwards (and deletes the one-time prekey a ``PreKeyDecryption`` names).
Randomness is only needed where libaxolotl makes keys: starting a session (base key and first
ratchet key) and receiving a new ratchet key from the peer (our next ratchet key). Encryption
itself is deterministic: the IV comes from the message keys.

Every decrypt either succeeds and updates the session, or raises ``SessionError`` and leaves
the session exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from textsecure_provision.crypto.keys import KeyPair, PublicKey, Rng
from textsecure_provision.errors import DuplicateMessageError, MessageTooFarError, SessionError
from textsecure_provision.protocol.session import wire
from textsecure_provision.protocol.session.ratchet import decrypt_with_state, encrypt_with_state
from textsecure_provision.protocol.session.state import Session
from textsecure_provision.protocol.session.x3dh import (
    PreKeyBundle,
    initiator_state,
    responder_state,
)

KeyLookup = Callable[[int], KeyPair | None]
"""Maps a prekey id to our key pair, or ``None`` if we hold no such key."""


class Ciphertext(NamedTuple):
    """What to send: ``msg_type`` 5 (PreKeyWhisperMessage) or 6 (WhisperMessage), and the body."""

    msg_type: int
    body: bytes


@dataclass(frozen=True)
class PreKeyDecryption:
    """The result of a type-5 message. Delete ``used_prekey_id`` (if any) from the store."""

    session: Session
    plaintext: bytes = field(repr=False)
    used_prekey_id: int | None
    their_identity: PublicKey
    their_registration_id: int


def initiate_session(
    our_identity: KeyPair,
    our_registration_id: int,
    bundle: PreKeyBundle,
    rng: Rng,
    *,
    previous: Session | None = None,
) -> Session:
    """Start a session from a device's prekey bundle (we are the initiator).

    With ``previous`` (a stale session being rebuilt) the old states are kept as archived
    states, so late messages on them still decrypt. Raises ``SessionError`` if the bundle's
    signature does not verify.
    """
    state = initiator_state(our_identity, our_registration_id, bundle, rng)
    if previous is None:
        return Session(state)
    session = Session(previous.state, list(previous.previous_states))
    session.archive_current(state)
    return session


def encrypt(session: Session, plaintext: bytes) -> Ciphertext:
    """Encrypt one message and advance the sending chain (in place)."""
    return Ciphertext(*encrypt_with_state(session.state, plaintext))


_FINAL = (DuplicateMessageError, MessageTooFarError)
"""Failures that another state would not cure: the message's chain was found."""


def _decrypt_with_record(work: Session, message: wire.WhisperMessage, rng: Rng) -> bytes:
    """Try the current state, then archived ones (promoting the one that works), as libaxolotl."""
    try:
        work.state, plaintext = decrypt_with_state(work.state, message, rng)
        return plaintext
    except _FINAL:
        raise
    except SessionError as exc:
        first_error = exc
    for i, state in enumerate(work.previous_states):
        try:
            promoted, plaintext = decrypt_with_state(state, message, rng)
        except _FINAL:
            raise
        except SessionError:
            continue
        del work.previous_states[i]
        work.archive_current(promoted)
        return plaintext
    raise first_error


def _commit(session: Session, work: Session) -> None:
    session.state = work.state
    session.previous_states = work.previous_states


def decrypt_message(session: Session, body: bytes, *, rng: Rng) -> bytes:
    """Decrypt a type-6 body with an existing session; updates it only on success."""
    message = wire.decode_whisper_message(body)
    work = Session(session.state, list(session.previous_states))
    plaintext = _decrypt_with_record(work, message, rng)
    _commit(session, work)
    return plaintext


def _has_base_key(session: Session, base_key: PublicKey) -> bool:
    return any(s.alice_base_key == base_key for s in (session.state, *session.previous_states))


def decrypt_prekey_message(
    session: Session | None,
    body: bytes,
    *,
    our_identity: KeyPair,
    our_registration_id: int,
    signed_prekeys: KeyLookup,
    one_time_prekeys: KeyLookup,
    rng: Rng,
    expected_identity: PublicKey | None = None,
) -> PreKeyDecryption:
    """Decrypt a type-5 body as the responder, building the session on its first message.

    ``session`` is our existing session with the sending device, if any: a repeated
    PreKeyWhisperMessage (same base key, the initiator has not had a reply yet) decrypts with
    the session it built, and a new base key (the peer rebuilt its session) archives the old
    state. ``expected_identity``, if given, must be the sender's identity key (on this project
    that is our own account's identity, §7 last rule).
    """
    message = wire.decode_prekey_whisper_message(body)
    if expected_identity is not None and message.identity_key != expected_identity:
        raise SessionError("the message comes from an unexpected identity key")
    used_prekey_id: int | None = None
    work = None if session is None else Session(session.state, list(session.previous_states))
    if work is None or not _has_base_key(work, message.base_key):
        signed_prekey = signed_prekeys(message.signed_prekey_id)
        if signed_prekey is None:
            raise SessionError("the message names a signed prekey this device does not hold")
        one_time = None
        if message.prekey_id is not None:
            one_time = one_time_prekeys(message.prekey_id)
            if one_time is None:
                raise SessionError("the message names a one-time prekey this device does not hold")
        state = responder_state(our_identity, our_registration_id, signed_prekey, one_time, message)
        if work is None:
            work = Session(state)
        else:
            work.archive_current(state)
        used_prekey_id = message.prekey_id
    plaintext = _decrypt_with_record(work, message.message, rng)
    # Report the identity the MAC verified. When an existing state decrypted the message, the
    # outer identityKey field was not used, so it must agree with that state's.
    if message.identity_key != work.state.remote_identity:
        raise SessionError("the message's identity key does not match its session")
    if session is None:
        session = work
    else:
        _commit(session, work)
    return PreKeyDecryption(
        session=session,
        plaintext=plaintext,
        used_prekey_id=used_prekey_id,
        their_identity=work.state.remote_identity,
        their_registration_id=work.state.remote_registration_id,
    )
