"""The libaxolotl v3 double ratchet over one ``SessionState`` (§7).

Why not the ``doubleratchet`` package's ``DoubleRatchet``: its ratchet class cannot produce or
accept libaxolotl v3 bytes (the KDFs and crypto recipes are ``crypto/symmetric.py``):

* libaxolotl's ``previousCounter`` is the *index* of the last message on the previous sending
  chain (``max(n - 1, 0)``), not the chain length the Double Ratchet spec puts in ``PN``; the
  package would skip one key too few and mislabel outgoing headers;
* the MAC covers ``senderIdentity || receiverIdentity || 0x33 || protobuf`` *as received* and is
  truncated to 8 bytes, while the package's AEAD authenticates ``ad || ciphertext`` with a full
  tag over a header it re-encodes itself;
* libaxolotl keeps up to 5 receiving chains (one per peer ratchet key, keys of skipped messages
  per chain) and X3DH gives both sides a chain at once, where the package has one receiving chain
  and a global skipped-key store;
* it creates ratchet keys in a static ``_generate_priv()`` with no ``rng`` argument, so the
  known-answer vectors could not inject keys; and its API is ``async``.

So the ratchet below is a few small functions that follow libaxolotl's ``SessionCipher``:
``decrypt_with_state`` works on a clone and returns it, so a failed message changes nothing,
and the caller commits the clone only on success.
"""

from __future__ import annotations

from typing import Final

from textsecure_provision.crypto.keys import KeyPair, PublicKey, Rng
from textsecure_provision.errors import (
    DuplicateMessageError,
    KeyFormatError,
    MessageTooFarError,
    SessionError,
)
from textsecure_provision.protocol.session import wire
from textsecure_provision.protocol.session.primitives import (
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    root_kdf,
)
from textsecure_provision.protocol.session.state import (
    MAX_SKIPPED_KEYS,
    ChainKey,
    MessageKeys,
    ReceiverChain,
    SessionState,
)

MAX_FORWARD_JUMP: Final = 2000
"""libaxolotl (2014) refuses a message more than 2000 messages ahead of its chain."""

PREKEY_MESSAGE_TYPE: Final = 5
"""Server message type of a PreKeyWhisperMessage (§6 PREKEY_BUNDLE_DEVICE_CONTROL)."""
WHISPER_MESSAGE_TYPE: Final = 6
"""Server message type of a WhisperMessage (§6 DEVICE_CONTROL)."""


def create_chain(
    root_key: bytes, their_ratchet: PublicKey, our_ratchet: KeyPair
) -> tuple[bytes, ChainKey]:
    """libaxolotl ``RootKey.createChain``: one DH ratchet step on the root chain."""
    try:
        dh = our_ratchet.exchange(their_ratchet)
    except KeyFormatError as exc:
        raise SessionError("the peer's ratchet key is not usable") from exc
    new_root, chain_key = root_kdf(root_key, dh)
    return new_root, ChainKey(chain_key, 0)


def encrypt_with_state(state: SessionState, plaintext: bytes) -> tuple[int, bytes]:
    """Encrypt on the sending chain and advance it; type 5 until a reply arrived (§7)."""
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise TypeError(f"plaintext must be bytes, not {type(plaintext).__name__}")
    chain = state.sender_chain
    if chain.index > wire.UINT32_MAX:
        raise SessionError("the sending chain is exhausted; rebuild the session")
    next_chain, seed = chain.step()
    keys = MessageKeys.derive(seed, chain.index)
    body = wire.encode_whisper_message(
        mac_key=keys.mac_key,
        ratchet_key=state.sender_ratchet.public,
        counter=chain.index,
        previous_counter=state.previous_counter,
        ciphertext=aes_cbc_encrypt(keys.cipher_key, keys.iv, bytes(plaintext)),
        sender_identity=state.local_identity,
        receiver_identity=state.remote_identity,
    )
    msg_type = WHISPER_MESSAGE_TYPE
    pending = state.pending_prekey
    if pending is not None:
        body = wire.encode_prekey_whisper_message(
            registration_id=state.local_registration_id,
            prekey_id=pending.prekey_id,
            signed_prekey_id=pending.signed_prekey_id,
            base_key=pending.base_key,
            identity_key=state.local_identity,
            message=body,
        )
        msg_type = PREKEY_MESSAGE_TYPE
    state.sender_chain = next_chain
    return msg_type, body


def _ratchet_step(state: SessionState, their_ratchet: PublicKey, rng: Rng) -> ReceiverChain:
    """A new peer ratchet key: derive its receiving chain and a new sending chain.

    As libaxolotl, the new sending key is generated here, on receipt, so ``rng`` is consumed in
    the same order as there.
    """
    root, receiving = create_chain(state.root_key, their_ratchet, state.sender_ratchet)
    our_new = KeyPair.generate(rng)
    root, sending = create_chain(root, their_ratchet, our_new)
    chain = ReceiverChain(their_ratchet, receiving)
    state.root_key = root
    state.add_receiver_chain(chain)
    state.previous_counter = max(state.sender_chain.index - 1, 0)
    state.sender_ratchet = our_new
    state.sender_chain = sending
    return chain


def _message_keys(chain: ReceiverChain, counter: int) -> MessageKeys:
    """The keys for message ``counter`` on ``chain``, storing those of skipped messages."""
    current = chain.chain_key
    if counter < current.index:
        seed = chain.skipped.pop(counter, None)
        if seed is None:
            raise DuplicateMessageError(
                "the message was already received (or is too old to decrypt)"
            )
        return MessageKeys.derive(seed, counter)
    if counter - current.index > MAX_FORWARD_JUMP:
        raise MessageTooFarError(
            f"the message is more than {MAX_FORWARD_JUMP} messages ahead of its chain"
        )
    while current.index < counter:
        current, seed = current.step()
        chain.skipped[current.index - 1] = seed
        if len(chain.skipped) > MAX_SKIPPED_KEYS:
            del chain.skipped[next(iter(chain.skipped))]
    chain.chain_key, seed = current.step()
    return MessageKeys.derive(seed, counter)


def decrypt_with_state(
    state: SessionState, message: wire.WhisperMessage, rng: Rng
) -> tuple[SessionState, bytes]:
    """Decrypt with one state; returns the updated clone. ``state`` itself is never changed."""
    new = state.clone()
    chain = new.receiver_chain(message.ratchet_key)
    if chain is None:
        chain = _ratchet_step(new, message.ratchet_key, rng)
    keys = _message_keys(chain, message.counter)
    # The sender's identity first: the MAC binds both ends, so a message meant for another
    # identity (or device session) fails here.
    wire.verify_mac(message, keys.mac_key, new.remote_identity, new.local_identity)
    plaintext = aes_cbc_decrypt(keys.cipher_key, keys.iv, message.ciphertext)
    new.pending_prekey = None
    return new, plaintext
