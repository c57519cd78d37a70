"""TextSecure v3 sessions between devices of one account, sans I/O (§7).

The whole API::

    bundle  = PreKeyBundle(identity_key, registration_id, signed_prekey_id, signed_prekey,
                           signed_prekey_signature, prekey_id=None, prekey=None)
    session = initiate_session(our_identity, our_registration_id, bundle, rng)
    msg_type, body = encrypt(session, plaintext)          # 5 until a reply arrived, then 6
    result  = decrypt_prekey_message(session_or_None, body, our_identity=..., ...)  # type 5
    plain   = decrypt_message(session, body, rng=rng)     # type 6
    Session.from_dict(session.to_dict())                  # for the store

See docs/sessions.md. Modules: ``x3dh`` (first state), ``ratchet`` (double ratchet over one
state), ``wire`` (byte layout), ``state`` (data + dict form), ``cipher`` (records),
``primitives`` (libaxolotl's key schedule over ``crypto.symmetric``).
"""

from __future__ import annotations

from textsecure_provision.protocol.session.cipher import (
    Ciphertext,
    KeyLookup,
    PreKeyDecryption,
    decrypt_message,
    decrypt_prekey_message,
    encrypt,
    initiate_session,
)
from textsecure_provision.protocol.session.ratchet import (
    MAX_FORWARD_JUMP,
    PREKEY_MESSAGE_TYPE,
    WHISPER_MESSAGE_TYPE,
)
from textsecure_provision.protocol.session.state import MAX_SKIPPED_KEYS, Session
from textsecure_provision.protocol.session.x3dh import PreKeyBundle

__all__ = [
    "MAX_FORWARD_JUMP",
    "MAX_SKIPPED_KEYS",
    "PREKEY_MESSAGE_TYPE",
    "WHISPER_MESSAGE_TYPE",
    "Ciphertext",
    "KeyLookup",
    "PreKeyBundle",
    "PreKeyDecryption",
    "Session",
    "decrypt_message",
    "decrypt_prekey_message",
    "encrypt",
    "initiate_session",
]
