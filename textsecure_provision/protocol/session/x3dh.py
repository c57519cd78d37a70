"""X3DH as libaxolotl v3 did it in 2014 (§7): the first state of a session on each side.

::

    master = 0xFF * 32 || DH(IK_a, SPK_b) || DH(EK_a, IK_b) || DH(EK_a, SPK_b) [|| DH(EK_a, OPK_b)]
    root key || chain key = HKDF-SHA256(ikm=master, salt=32 zero bytes, info="WhisperText", L=64)

The initiator ("Alice") then takes one DH ratchet step against the signed prekey, which serves
as the responder's first ratchet key; the responder ("Bob") starts with the signed prekey as his
sending ratchet key. Alice generates exactly two keys, in this order (libaxolotl's order, which
the vectors rely on): the base key EK_a, then her first ratchet key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from textsecure_provision.crypto import signing
from textsecure_provision.crypto.keys import KeyPair, PublicKey, Rng
from textsecure_provision.errors import KeyFormatError, SessionError
from textsecure_provision.protocol.session import wire
from textsecure_provision.protocol.session.primitives import KEY_LEN, ZERO_SALT, hkdf_sha256
from textsecure_provision.protocol.session.ratchet import create_chain
from textsecure_provision.protocol.session.state import (
    ChainKey,
    PendingPreKey,
    ReceiverChain,
    SessionState,
)

DISCONTINUITY: Final = b"\xff" * 32
"""v3 prefixes the master secret with 32 0xFF bytes (the X25519/XEdDSA "discontinuity")."""
TEXT_INFO: Final = b"WhisperText"


def _check_id(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= wire.UINT32_MAX:
        raise ValueError(f"{name} must be an int that fits a uint32")


@dataclass(frozen=True)
class PreKeyBundle:
    """One device's keys as ``GET /v1/keys/{number}/{device}`` returns them (§4)."""

    identity_key: PublicKey
    registration_id: int
    signed_prekey_id: int
    signed_prekey: PublicKey
    signed_prekey_signature: bytes = field(repr=False)
    prekey_id: int | None = None
    prekey: PublicKey | None = None

    def __post_init__(self) -> None:
        for name in ("identity_key", "signed_prekey"):
            if not isinstance(getattr(self, name), PublicKey):
                raise TypeError(f"{name} must be a PublicKey")
        if self.prekey is not None and not isinstance(self.prekey, PublicKey):
            raise TypeError("prekey must be a PublicKey")
        if not isinstance(self.signed_prekey_signature, bytes):
            raise TypeError("signed_prekey_signature must be bytes")
        _check_id("registration_id", self.registration_id)
        _check_id("signed_prekey_id", self.signed_prekey_id)
        if (self.prekey_id is None) != (self.prekey is None):
            raise ValueError("a one-time prekey needs both its id and its public key")
        if self.prekey_id is not None:
            _check_id("prekey_id", self.prekey_id)

    def verify(self) -> None:
        """The signed prekey must be signed by the identity key (XEdDSA or 2014 form, §7)."""
        if not signing.verify(
            self.identity_key, self.signed_prekey.serialize(), self.signed_prekey_signature
        ):
            raise SessionError("the signed prekey's signature does not verify")


def derive_initial_keys(master_secret: bytes) -> tuple[bytes, ChainKey]:
    """``(root key, chain key)`` from the X3DH master secret."""
    okm = hkdf_sha256(master_secret, ZERO_SALT, TEXT_INFO, 2 * KEY_LEN)
    return okm[:KEY_LEN], ChainKey(okm[KEY_LEN:], 0)


def _dh(ours: KeyPair, theirs: PublicKey) -> bytes:
    try:
        return ours.exchange(theirs)
    except KeyFormatError as exc:
        raise SessionError("a key of the peer is not usable (low order)") from exc


def initiator_state(
    our_identity: KeyPair, our_registration_id: int, bundle: PreKeyBundle, rng: Rng
) -> SessionState:
    """Alice's first state from Bob's bundle; verifies the bundle's signature first."""
    _check_id("our_registration_id", our_registration_id)
    bundle.verify()
    base = KeyPair.generate(rng)
    sending_ratchet = KeyPair.generate(rng)
    secret = (
        DISCONTINUITY
        + _dh(our_identity, bundle.signed_prekey)
        + _dh(base, bundle.identity_key)
        + _dh(base, bundle.signed_prekey)
    )
    if bundle.prekey is not None:
        secret += _dh(base, bundle.prekey)
    root_key, chain_key = derive_initial_keys(secret)
    root_key, sending_chain = create_chain(root_key, bundle.signed_prekey, sending_ratchet)
    return SessionState(
        local_identity=our_identity.public,
        remote_identity=bundle.identity_key,
        local_registration_id=our_registration_id,
        remote_registration_id=bundle.registration_id,
        root_key=root_key,
        sender_ratchet=sending_ratchet,
        sender_chain=sending_chain,
        receiver_chains=[ReceiverChain(bundle.signed_prekey, chain_key)],
        pending_prekey=PendingPreKey(bundle.prekey_id, bundle.signed_prekey_id, base.public),
        alice_base_key=base.public,
    )


def responder_state(
    our_identity: KeyPair,
    our_registration_id: int,
    our_signed_prekey: KeyPair,
    our_one_time_prekey: KeyPair | None,
    message: wire.PreKeyWhisperMessage,
) -> SessionState:
    """Bob's first state from Alice's PreKeyWhisperMessage (no randomness needed)."""
    _check_id("our_registration_id", our_registration_id)
    secret = (
        DISCONTINUITY
        + _dh(our_signed_prekey, message.identity_key)
        + _dh(our_identity, message.base_key)
        + _dh(our_signed_prekey, message.base_key)
    )
    if our_one_time_prekey is not None:
        secret += _dh(our_one_time_prekey, message.base_key)
    root_key, chain_key = derive_initial_keys(secret)
    return SessionState(
        local_identity=our_identity.public,
        remote_identity=message.identity_key,
        local_registration_id=our_registration_id,
        remote_registration_id=message.registration_id,
        root_key=root_key,
        sender_ratchet=our_signed_prekey,
        sender_chain=chain_key,
        alice_base_key=message.base_key,
    )
