from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdentityKeyPairStructure(_message.Message):
    __slots__ = ("publicKey", "privateKey")
    PUBLICKEY_FIELD_NUMBER: _ClassVar[int]
    PRIVATEKEY_FIELD_NUMBER: _ClassVar[int]
    publicKey: bytes
    privateKey: bytes
    def __init__(self, publicKey: _Optional[bytes] = ..., privateKey: _Optional[bytes] = ...) -> None: ...

class DeviceInit(_message.Message):
    __slots__ = ("masterEphemeralPubKey", "identityKeyMessage")
    MASTEREPHEMERALPUBKEY_FIELD_NUMBER: _ClassVar[int]
    IDENTITYKEYMESSAGE_FIELD_NUMBER: _ClassVar[int]
    masterEphemeralPubKey: bytes
    identityKeyMessage: bytes
    def __init__(self, masterEphemeralPubKey: _Optional[bytes] = ..., identityKeyMessage: _Optional[bytes] = ...) -> None: ...

class IdentityKey(_message.Message):
    __slots__ = ("identityKey", "phoneNumber", "server", "masterSupportsSms", "provisioningCode")
    IDENTITYKEY_FIELD_NUMBER: _ClassVar[int]
    PHONENUMBER_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    MASTERSUPPORTSSMS_FIELD_NUMBER: _ClassVar[int]
    PROVISIONINGCODE_FIELD_NUMBER: _ClassVar[int]
    identityKey: bytes
    phoneNumber: str
    server: str
    masterSupportsSms: bool
    provisioningCode: int
    def __init__(self, identityKey: _Optional[bytes] = ..., phoneNumber: _Optional[str] = ..., server: _Optional[str] = ..., masterSupportsSms: _Optional[bool] = ..., provisioningCode: _Optional[int] = ...) -> None: ...

class IncomingPushMessageSignal(_message.Message):
    __slots__ = ("type", "source", "sourceDevice", "relay", "timestamp", "message")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[IncomingPushMessageSignal.Type]
        CIPHERTEXT: _ClassVar[IncomingPushMessageSignal.Type]
        KEY_EXCHANGE: _ClassVar[IncomingPushMessageSignal.Type]
        PREKEY_BUNDLE: _ClassVar[IncomingPushMessageSignal.Type]
        PLAINTEXT: _ClassVar[IncomingPushMessageSignal.Type]
        PREKEY_BUNDLE_DEVICE_CONTROL: _ClassVar[IncomingPushMessageSignal.Type]
        DEVICE_CONTROL: _ClassVar[IncomingPushMessageSignal.Type]
    UNKNOWN: IncomingPushMessageSignal.Type
    CIPHERTEXT: IncomingPushMessageSignal.Type
    KEY_EXCHANGE: IncomingPushMessageSignal.Type
    PREKEY_BUNDLE: IncomingPushMessageSignal.Type
    PLAINTEXT: IncomingPushMessageSignal.Type
    PREKEY_BUNDLE_DEVICE_CONTROL: IncomingPushMessageSignal.Type
    DEVICE_CONTROL: IncomingPushMessageSignal.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCEDEVICE_FIELD_NUMBER: _ClassVar[int]
    RELAY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: IncomingPushMessageSignal.Type
    source: str
    sourceDevice: int
    relay: str
    timestamp: int
    message: bytes
    def __init__(self, type: _Optional[_Union[IncomingPushMessageSignal.Type, str]] = ..., source: _Optional[str] = ..., sourceDevice: _Optional[int] = ..., relay: _Optional[str] = ..., timestamp: _Optional[int] = ..., message: _Optional[bytes] = ...) -> None: ...

class DeviceControl(_message.Message):
    __slots__ = ("type", "newDeviceId", "message")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[DeviceControl.Type]
        NEW_DEVICE_REGISTERED: _ClassVar[DeviceControl.Type]
        SENT_MESSAGE: _ClassVar[DeviceControl.Type]
    UNKNOWN: DeviceControl.Type
    NEW_DEVICE_REGISTERED: DeviceControl.Type
    SENT_MESSAGE: DeviceControl.Type
    class MessageSent(_message.Message):
        __slots__ = ("otherNumber", "timestamp", "message")
        OTHERNUMBER_FIELD_NUMBER: _ClassVar[int]
        TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_FIELD_NUMBER: _ClassVar[int]
        otherNumber: str
        timestamp: int
        message: bytes
        def __init__(self, otherNumber: _Optional[str] = ..., timestamp: _Optional[int] = ..., message: _Optional[bytes] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NEWDEVICEID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: DeviceControl.Type
    newDeviceId: int
    message: DeviceControl.MessageSent
    def __init__(self, type: _Optional[_Union[DeviceControl.Type, str]] = ..., newDeviceId: _Optional[int] = ..., message: _Optional[_Union[DeviceControl.MessageSent, _Mapping]] = ...) -> None: ...

class PushMessageContent(_message.Message):
    __slots__ = ("body",)
    BODY_FIELD_NUMBER: _ClassVar[int]
    body: str
    def __init__(self, body: _Optional[str] = ...) -> None: ...
