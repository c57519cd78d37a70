from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class WhisperMessage(_message.Message):
    __slots__ = ("ratchetKey", "counter", "previousCounter", "ciphertext")
    RATCHETKEY_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    PREVIOUSCOUNTER_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    ratchetKey: bytes
    counter: int
    previousCounter: int
    ciphertext: bytes
    def __init__(self, ratchetKey: _Optional[bytes] = ..., counter: _Optional[int] = ..., previousCounter: _Optional[int] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class PreKeyWhisperMessage(_message.Message):
    __slots__ = ("registrationId", "preKeyId", "signedPreKeyId", "baseKey", "identityKey", "message")
    REGISTRATIONID_FIELD_NUMBER: _ClassVar[int]
    PREKEYID_FIELD_NUMBER: _ClassVar[int]
    SIGNEDPREKEYID_FIELD_NUMBER: _ClassVar[int]
    BASEKEY_FIELD_NUMBER: _ClassVar[int]
    IDENTITYKEY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    registrationId: int
    preKeyId: int
    signedPreKeyId: int
    baseKey: bytes
    identityKey: bytes
    message: bytes
    def __init__(self, registrationId: _Optional[int] = ..., preKeyId: _Optional[int] = ..., signedPreKeyId: _Optional[int] = ..., baseKey: _Optional[bytes] = ..., identityKey: _Optional[bytes] = ..., message: _Optional[bytes] = ...) -> None: ...
