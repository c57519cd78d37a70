"""Session state as plain data, and its JSON-able form for the device's store (§7).

The shapes follow libaxolotl's ``SessionRecord``/``SessionState``: a record holds the current
state plus up to 40 archived ones (a peer may still send on an older session after a rebuild);
a state holds the root key, one sending chain, up to 5 receiving chains (one per peer ratchet
key), and for each receiving chain the message keys of skipped messages (up to 2000).

Key material is included in the dict on purpose: the store writes it 0600 and a session is
useless without it. Only ``repr`` hides it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Final

from textsecure_provision.crypto.keys import KeyPair, PublicKey
from textsecure_provision.errors import InvalidInputError, MessageFormatError
from textsecure_provision.protocol.encoding import b64decode, b64encode
from textsecure_provision.protocol.session.primitives import (
    KEY_LEN,
    MESSAGE_KEYS_INFO,
    ZERO_SALT,
    chain_kdf,
    hkdf_sha256,
)

SESSION_FORMAT: Final = 1
"""Version of the dict layout below; bump it (and migrate) on any change."""
SESSION_VERSION: Final = 3
UINT32_MAX: Final = 2**32 - 1
MAX_ARCHIVED_STATES: Final = 40
MAX_RECEIVER_CHAINS: Final = 5
MAX_SKIPPED_KEYS: Final = 2000
"""Per receiving chain, as libaxolotl; the oldest skipped key is dropped first."""


@dataclass(frozen=True)
class MessageKeys:
    """What one message is encrypted with: HKDF(seed, "WhisperMessageKeys", 80) split 32/32/16."""

    cipher_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    iv: bytes = field(repr=False)
    counter: int

    @classmethod
    def derive(cls, seed: bytes, counter: int) -> MessageKeys:
        okm = hkdf_sha256(seed, ZERO_SALT, MESSAGE_KEYS_INFO, 80)
        return cls(okm[:32], okm[32:64], okm[64:80], counter)


@dataclass(frozen=True)
class ChainKey:
    """A sending or receiving chain key and the counter of the next message on it."""

    key: bytes = field(repr=False)
    index: int

    def step(self) -> tuple[ChainKey, bytes]:
        """``(next chain key, message key seed for message number self.index)``."""
        next_key, seed = chain_kdf(self.key)
        return ChainKey(next_key, self.index + 1), seed


@dataclass
class ReceiverChain:
    """The chain for one ratchet key of the peer; ``skipped`` maps counter → message key seed."""

    ratchet_key: PublicKey
    chain_key: ChainKey
    skipped: dict[int, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class PendingPreKey:
    """Set on the initiator until the first reply: every message goes out as type 5 (§7)."""

    prekey_id: int | None
    signed_prekey_id: int
    base_key: PublicKey


@dataclass
class SessionState:
    """One X3DH + double ratchet session with one device."""

    local_identity: PublicKey
    remote_identity: PublicKey
    local_registration_id: int
    remote_registration_id: int
    root_key: bytes = field(repr=False)
    sender_ratchet: KeyPair
    sender_chain: ChainKey
    previous_counter: int = 0
    receiver_chains: list[ReceiverChain] = field(default_factory=list)
    pending_prekey: PendingPreKey | None = None
    alice_base_key: PublicKey | None = None
    """The initiator's base key: identifies the session a PreKeyWhisperMessage belongs to."""

    def clone(self) -> SessionState:
        """A copy that can be changed without touching this one (decrypt commits on success)."""
        new = copy.copy(self)
        new.receiver_chains = [
            ReceiverChain(c.ratchet_key, c.chain_key, dict(c.skipped)) for c in self.receiver_chains
        ]
        return new

    def receiver_chain(self, ratchet_key: PublicKey) -> ReceiverChain | None:
        for chain in self.receiver_chains:
            if chain.ratchet_key == ratchet_key:
                return chain
        return None

    def add_receiver_chain(self, chain: ReceiverChain) -> None:
        self.receiver_chains.append(chain)
        del self.receiver_chains[:-MAX_RECEIVER_CHAINS]


@dataclass
class Session:
    """A session record with one remote device: the current state and archived ones.

    Mutable on purpose: ``encrypt`` and the decrypt functions update it in place (decrypting
    only on success), and the caller then persists ``to_dict()``.
    """

    state: SessionState
    previous_states: list[SessionState] = field(default_factory=list)

    @property
    def remote_identity(self) -> PublicKey:
        return self.state.remote_identity

    @property
    def remote_registration_id(self) -> int:
        return self.state.remote_registration_id

    @property
    def has_received_reply(self) -> bool:
        """False while outgoing messages still carry the prekey header (type 5)."""
        return self.state.pending_prekey is None

    def archive_current(self, new_state: SessionState) -> None:
        """Make ``new_state`` current, keeping the old one for late messages (libaxolotl)."""
        self.previous_states.insert(0, self.state)
        del self.previous_states[MAX_ARCHIVED_STATES:]
        self.state = new_state

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SESSION_FORMAT,
            "current": _state_to_dict(self.state),
            "previous": [_state_to_dict(s) for s in self.previous_states],
        }

    @classmethod
    def from_dict(cls, data: object) -> Session:
        """Inverse of ``to_dict``; anything malformed is ``MessageFormatError``."""
        obj = _obj(data, "session")
        if obj.get("format") != SESSION_FORMAT:
            raise MessageFormatError("the stored session has an unknown format")
        previous = obj.get("previous")
        if not isinstance(previous, list) or len(previous) > MAX_ARCHIVED_STATES:
            raise MessageFormatError("the stored session's previous states are malformed")
        return cls(
            _state_from_dict(obj.get("current")),
            [_state_from_dict(s) for s in previous],
        )


# -- dict form --------------------------------------------------------------------------------


def _key_to_str(key: PublicKey) -> str:
    return b64encode(key.serialize())


def _chain_to_dict(chain: ChainKey) -> dict[str, Any]:
    return {"key": b64encode(chain.key), "index": chain.index}


def _state_to_dict(state: SessionState) -> dict[str, Any]:
    pending = state.pending_prekey
    return {
        "version": SESSION_VERSION,
        "local_identity": _key_to_str(state.local_identity),
        "remote_identity": _key_to_str(state.remote_identity),
        "local_registration_id": state.local_registration_id,
        "remote_registration_id": state.remote_registration_id,
        "root_key": b64encode(state.root_key),
        "sender_ratchet_private": b64encode(state.sender_ratchet.private.serialize()),
        "sender_chain": _chain_to_dict(state.sender_chain),
        "previous_counter": state.previous_counter,
        "receiver_chains": [
            {
                "ratchet_key": _key_to_str(c.ratchet_key),
                "chain": _chain_to_dict(c.chain_key),
                "skipped": [[n, b64encode(seed)] for n, seed in c.skipped.items()],
            }
            for c in state.receiver_chains
        ],
        "pending_prekey": None
        if pending is None
        else {
            "prekey_id": pending.prekey_id,
            "signed_prekey_id": pending.signed_prekey_id,
            "base_key": _key_to_str(pending.base_key),
        },
        "alice_base_key": None
        if state.alice_base_key is None
        else _key_to_str(state.alice_base_key),
    }


def _obj(data: object, name: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MessageFormatError(f"the stored {name} is not an object")
    return data


def _uint32(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT32_MAX:
        raise MessageFormatError(f"the stored session's {name} is not a uint32")
    return value


def _secret(obj: dict[str, Any], name: str) -> bytes:
    raw = b64decode(obj.get(name), name=f"the stored session's {name}")
    if len(raw) != KEY_LEN:
        raise MessageFormatError(f"the stored session's {name} is not {KEY_LEN} bytes")
    return raw


def _public(obj: dict[str, Any], name: str) -> PublicKey:
    raw = b64decode(obj.get(name), name=f"the stored session's {name}")
    try:
        return PublicKey.from_bytes(raw, name=name)
    except InvalidInputError as exc:
        raise MessageFormatError(f"the stored session's {name} is not a valid key") from exc


def _chain_from_dict(data: object) -> ChainKey:
    obj = _obj(data, "chain")
    return ChainKey(_secret(obj, "key"), _uint32(obj, "index"))


def _receiver_from_dict(data: object) -> ReceiverChain:
    obj = _obj(data, "receiver chain")
    skipped_list = obj.get("skipped")
    if not isinstance(skipped_list, list) or len(skipped_list) > MAX_SKIPPED_KEYS:
        raise MessageFormatError("the stored session's skipped keys are malformed")
    skipped: dict[int, bytes] = {}
    for item in skipped_list:
        if not isinstance(item, list) or len(item) != 2:
            raise MessageFormatError("the stored session's skipped keys are malformed")
        pair = {"n": item[0], "seed": item[1]}
        skipped[_uint32(pair, "n")] = _secret(pair, "seed")
    return ReceiverChain(_public(obj, "ratchet_key"), _chain_from_dict(obj.get("chain")), skipped)


def _state_from_dict(data: object) -> SessionState:
    obj = _obj(data, "session state")
    if obj.get("version") != SESSION_VERSION:
        raise MessageFormatError("the stored session state is not a v3 session")
    chains = obj.get("receiver_chains")
    if not isinstance(chains, list) or len(chains) > MAX_RECEIVER_CHAINS:
        raise MessageFormatError("the stored session's receiver chains are malformed")
    pending_obj = obj.get("pending_prekey")
    pending = None
    if pending_obj is not None:
        p = _obj(pending_obj, "pending prekey")
        pending = PendingPreKey(
            None if p.get("prekey_id") is None else _uint32(p, "prekey_id"),
            _uint32(p, "signed_prekey_id"),
            _public(p, "base_key"),
        )
    try:
        sender_ratchet = KeyPair.from_private(_secret(obj, "sender_ratchet_private"))
    except InvalidInputError as exc:
        raise MessageFormatError("the stored session's ratchet key is not valid") from exc
    return SessionState(
        local_identity=_public(obj, "local_identity"),
        remote_identity=_public(obj, "remote_identity"),
        local_registration_id=_uint32(obj, "local_registration_id"),
        remote_registration_id=_uint32(obj, "remote_registration_id"),
        root_key=_secret(obj, "root_key"),
        sender_ratchet=sender_ratchet,
        sender_chain=_chain_from_dict(obj.get("sender_chain")),
        previous_counter=_uint32(obj, "previous_counter"),
        receiver_chains=[_receiver_from_dict(c) for c in chains],
        pending_prekey=pending,
        alice_base_key=None
        if obj.get("alice_base_key") is None
        else _public(obj, "alice_base_key"),
    )
