"""The one error hierarchy of textsecure-provision.

Every layer speaks this vocabulary: the core raises these, the CLI maps each to
an exit code once (``cli/main.py``), the server maps each to an HTTP status once
(``server/app.py``), and the transport maps HTTP statuses back to them, so
both ends of the wire share one set of names.

::

    ProvisionError              exit 1 / 500
    ├─ InvalidInputError        exit 2 / 400  KeyFormatError, PhoneNumberError,
    │  └─ LocalProtocolError                  MessageFormatError
    │                                         LinkError -, QrError - (NoSuchImageError,
    │                                         UnreadableImageError, NotAnImageError,
    │                                         NoQrCodeError, SeveralQrCodesError),
    │                                         QrDecoderUnavailableError -, ShortCodeFormatError
    ├─ TimedOutError            exit 3 / -
    ├─ RefusedError             exit 4 / -    NumberMismatchError, ConfirmationMismatchError,
    │                                         WrongShortCodeError
    ├─ UntrustedServerError     exit 5 / -
    ├─ ServerUnreachableError   exit 6 / -    RemoteProtocolError -, ServerDegradedError -
    ├─ ServerRefusedError       exit 7        AuthError 401, ForbiddenError 403,
    │                                         DeviceUnlinkedError 401, CodeRejectedError 403,
    │                                         RegistrationCodeRejectedError 403, NotFoundError 404,
    │                                         ChannelGoneError 404, ConflictError 409,
    │                                         IdentityKeyMismatchError 409,
    │                                         MismatchedDevicesError 409, StaleDevicesError 410,
    │                                         DeviceLimitError 411, TooLargeError 413,
    │                                         RateLimitedError 429, NameplateGoneError 404,
    │                                         NameplateClaimedError 409, NameplateBurnedError
    │                                         410, ShortCodesUnsupportedError 404
    ├─ BadMessageError          exit 8 / -    EnvelopeError, SessionError (DuplicateMessageError,
    │                                         MessageTooFarError), ShortCodeMessageError
    ├─ StoreError               exit 9 / 503  ServiceUnavailableError
    └─ UserInterruptError       exit 130 / -  Ctrl-C; the message says what state things are in

(``-``: raised by clients only, no HTTP status.)

Local or remote, as h11 splits them: ``LocalProtocolError`` (and its
``MessageFormatError``) is something malformed on this side: an option, a file,
a link the user gave, a message the core was handed. ``RemoteProtocolError`` is
a malformed answer from the server: not the user's fault, so not exit 2 and
not "check the input".

Messages never contain secrets (keys, passwords, codes, bodies). ``hint`` is the
user's next step, printed by the CLI after the message; it is set per class (or once
at construction), never changed on a raised instance: ``with_hint`` makes a copy.
What went wrong is the class, never a string in the instance: a caller that must tell
two cases apart catches two subclasses.

Errors only a client raises (the user refused, a link or picture is bad, a message
failed to decrypt, the server could not be reached) have ``http_status = None``:
should one ever reach the server's error handler, it is a bug (500).

This module imports nothing from the package.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, TypeVar

_E = TypeVar("_E", bound="ProvisionError")


class ProvisionError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int | None] = 500
    hint: ClassVar[str] = "This is probably a bug; rerun with -v and report it."

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip().splitlines()[0])
        if hint is not None:
            self.hint = hint  # type: ignore[misc]

    @property
    def message(self) -> str:
        return str(self.args[0])

    def with_hint(self: _E, hint: str) -> _E:
        """A copy of this error (same class, message and fields) with another next step."""
        new = copy.copy(self)
        new.hint = hint  # type: ignore[misc]
        return new


# -- 2: bad input ---------------------------------------------------------------------------


class InvalidInputError(ProvisionError):
    """The input is malformed."""

    exit_code = 2
    http_status: ClassVar[int | None] = 400
    hint = "Check the input and try again."


class LinkError(InvalidInputError):
    """The provisioning link (QR content) is not valid (§3)."""

    http_status = None

    hint = "Scan the QR code shown by `provision secondary` again, or restart the secondary."


class KeyFormatError(InvalidInputError):
    """A key has the wrong length, type byte or encoding (§2)."""


class LocalProtocolError(InvalidInputError):
    """Something given on this side (an option, a file, a message handed in) is malformed."""


class MessageFormatError(LocalProtocolError):
    """A protobuf, JSON or base64 value could not be decoded."""


class PhoneNumberError(InvalidInputError):
    """A phone number is not in E.164 form (§2)."""

    hint = "Give the number in E.164 form: '+' then 8 to 15 digits, e.g. +15550001111."


class ShortCodeFormatError(InvalidInputError):
    """A typed short code is not ``NUMBER-word-word``, or a word is not in the list."""

    hint = "Type the code exactly as `provision secondary` shows it, e.g. 7-revenge-tiger."


class QrError(InvalidInputError):
    """No usable QR code could be read from the image."""

    http_status = None
    hint = "Take a sharper, straighter picture of the whole QR code, or pass --link instead."


class NoSuchImageError(QrError):
    """The picture's file does not exist."""

    hint = "Check the path of the picture."


class UnreadableImageError(QrError):
    """The picture's file exists but cannot be read (a folder, no permission, I/O error)."""

    hint = "Check the path of the picture and that you may read it."


class NotAnImageError(QrError):
    """The file is not a picture this program can read (or is damaged, or far too large)."""

    hint = "Give a PNG or JPEG picture of the QR code."


class NoQrCodeError(QrError):
    """The picture holds no QR code that could be read."""


class SeveralQrCodesError(QrError):
    """The picture holds several different QR codes: none is picked (§8)."""

    hint = "Crop the picture to the one QR code shown by `provision secondary`."


class QrDecoderUnavailableError(InvalidInputError):
    """The QR decoder asked for cannot run here (its package or system library is missing)."""

    http_status = None
    hint = "Install what the message names, or leave --qr-decoder at its default (zxing)."


# -- 3: timed out ---------------------------------------------------------------------------


class TimedOutError(ProvisionError):
    """Waiting ran out of time."""

    exit_code = 3
    http_status = None
    hint = "Restart the command, and scan the QR code within the time shown."


# -- 4: refused by the user -----------------------------------------------------------------


class RefusedError(ProvisionError):
    """The user declined, or a value the user must confirm did not match."""

    exit_code = 4
    http_status = None
    hint = "Nothing was linked. Restart both sides if you want to try again."


class NumberMismatchError(RefusedError):
    """The phone number in the DeviceInit is not the one the user expected (§1 step 6)."""

    hint = (
        "Do not link this device: someone else may have scanned your QR code. "
        "Restart `provision secondary` and scan it from your own phone."
    )


class ConfirmationMismatchError(RefusedError):
    """The confirmation code does not match the one shown on the other device (§5)."""

    hint = "Do not link this device. Restart both sides and compare the codes again."


class WrongShortCodeError(RefusedError):
    """The two sides did not type the same short code: the key confirmation failed."""

    hint = (
        "The code is burned now: nothing was sent and nothing was linked. Restart "
        "`provision secondary` for a new code and type it again."
    )


# -- 5: untrusted server --------------------------------------------------------------------


class UntrustedServerError(ProvisionError):
    """A server named by the peer is not on this device's trusted list (§8)."""

    exit_code = 5
    http_status = None
    hint = (
        "If you do trust it, add it with --trusted-server URL (or PROVISION_TRUSTED_SERVERS); "
        "otherwise do not link."
    )


# -- 6: unreachable -------------------------------------------------------------------------


class ServerUnreachableError(ProvisionError):
    """The server could not be reached (connection, DNS or TLS failure)."""

    exit_code = 6
    http_status = None
    hint = "Check the server URL, your network, and --ca-file if the server uses its own CA."


class RemoteProtocolError(ServerUnreachableError):
    """The server's answer is malformed: the server's fault (or a proxy's), not the user's."""

    hint = (
        "The server (or something between you and it, such as a proxy) answered something "
        "this client cannot read. Try again later, or tell the server's operator."
    )


class ServerDegradedError(ServerUnreachableError):
    """The server is up but cannot serve now (503): its database or Redis is down."""

    hint = (
        "The server answered, but one of its own services is down; nothing on your side "
        "needs changing. Try again in a few minutes, or tell the server's operator."
    )

    def __init__(self, message: str = "", *, retry_after: int | None = None, **kw: Any) -> None:
        if retry_after is not None and kw.get("hint") is None:
            kw["hint"] = (  # set once, at construction
                f"The server is degraded and asks to wait {describe_wait(retry_after)}; "
                "try again after that, or tell the server's operator."
            )
        super().__init__(message, **kw)
        self.retry_after = retry_after


# -- 7: refused by the server ---------------------------------------------------------------


class ServerRefusedError(ProvisionError):
    """The server refused the request."""

    exit_code = 7
    http_status = 400
    hint = "See the message above; restart the link if it was interrupted."


class AuthError(ServerRefusedError):
    """Wrong or missing credentials."""

    http_status = 401
    hint = "Check the account number and this device's stored credentials (provision whoami)."


class ForbiddenError(ServerRefusedError):
    """The request is not allowed for this device."""

    http_status = 403
    hint = "This device may not do that."


class DeviceUnlinkedError(AuthError):
    """The server no longer accepts this device: it was removed, or the account replaced it."""

    hint = (
        "This device is no longer linked. Run `provision reset` to delete its data folder "
        "(it unlinks what it still can), then link it again with `provision secondary`."
    )


class CodeRejectedError(ServerRefusedError):
    """The code was wrong, expired or already used."""

    http_status = 403
    hint = "Restart the link from the secondary device to get a fresh code."


class RegistrationCodeRejectedError(CodeRejectedError):
    """The registration code was wrong, expired or already used."""

    hint = (
        "Check the registration code you typed, or run `provision register` again without "
        "--code to have a new one sent."
    )


class NotFoundError(ServerRefusedError):
    """No such resource."""

    http_status = 404
    hint = "Check the id or number you gave."


class ChannelGoneError(NotFoundError):
    """The secondary's channel is gone: expired, already used, or never existed (§4.1)."""

    hint = "Restart `provision secondary` on the new device and scan its new QR code."


class ConflictError(ServerRefusedError):
    """The request conflicts with the server's state."""

    http_status = 409


class IdentityKeyMismatchError(ConflictError):
    """The identity key differs from the account's identity key."""

    hint = "This device holds another account's identity; link it again."


class MismatchedDevicesError(ConflictError):
    """The message did not cover exactly the destination's devices (409)."""

    hint = "Refresh the destination's device list and send again."

    def __init__(
        self,
        message: str = "",
        *,
        missing: list[int] | None = None,
        extra: list[int] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.missing = list(missing or [])
        self.extra = list(extra or [])


class StaleDevicesError(ServerRefusedError):
    """A destination device's registration id changed: it was re-linked (410)."""

    http_status = 410
    hint = "Fetch fresh keys for those devices and send again."

    def __init__(self, message: str = "", *, stale: list[int] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.stale = list(stale or [])


class DeviceLimitError(ServerRefusedError):
    """The account already has the maximum number of devices (411)."""

    http_status = 411
    hint = "Unlink a device with `provision devices remove ID` first."


class TooLargeError(ServerRefusedError):
    """The request is too large (413)."""

    http_status = 413
    hint = "Send less at once."


class RateLimitedError(ServerRefusedError):
    """Too many requests; the server asks to wait (429)."""

    http_status = 429
    hint = "Wait a little and try again."

    def __init__(self, message: str = "", *, retry_after: int = 60, **kw: Any) -> None:
        if kw.get("hint") is None:  # the server's own figure, not "a little" (set once, here)
            kw["hint"] = (
                f"The server asks to wait {describe_wait(retry_after)} "
                f"(Retry-After: {retry_after}); try again after that."
            )
        super().__init__(message, **kw)
        self.retry_after = retry_after


class NameplateGoneError(NotFoundError):
    """No open short code with that number on this server: expired, used or mistyped."""

    hint = (
        "Check the number at the start of the code, and that the new device uses this "
        "account's server (--server); else restart `provision secondary` for a new code."
    )


class NameplateClaimedError(ConflictError):
    """Another device already used this short code (one attempt per code)."""

    hint = "Restart `provision secondary` on the new device for a new code."


class NameplateBurnedError(ServerRefusedError):
    """The short code was burned: a wrong code was tried on it (410)."""

    http_status = 410
    hint = "Restart `provision secondary` on the new device for a new code."


class ShortCodesUnsupportedError(ServerRefusedError):
    """The server does not offer links by short code (an older or configured-off server)."""

    http_status = 404
    hint = "Link with the QR code or the link text instead (`provision master scan`)."


# -- 8: failed authentication ---------------------------------------------------------------


class BadMessageError(ProvisionError):
    """A message failed authentication or could not be decrypted."""

    exit_code = 8
    http_status = None
    hint = "The message may have been tampered with. Restart the link; do not trust this one."


class EnvelopeError(BadMessageError):
    """The DeviceInit could not be opened (version, length, MAC or padding) (§5)."""


class SessionError(BadMessageError):
    """A session message could not be decrypted or verified (§7)."""

    hint = "Run `provision send-control new-device-registered` to rebuild sessions."


class DuplicateMessageError(SessionError):
    """The message was already received, or its key was dropped as too old (§7)."""


class MessageTooFarError(SessionError):
    """The message is too far ahead of its chain to derive its key (§7)."""


class ShortCodeMessageError(BadMessageError):
    """A short-code exchange message is malformed, out of order, or failed authentication."""

    hint = "Someone may be tampering with the exchange. Restart both sides; do not trust it."


# -- 9: store -------------------------------------------------------------------------------


class StoreError(ProvisionError):
    """The local data folder (or the server's database) is unusable."""

    exit_code = 9
    http_status = 503
    hint = "Check the data folder: it must be yours, mode 0700, with files 0600."


class ServiceUnavailableError(StoreError):
    """A server dependency (database or Redis) is down; try again shortly."""

    hint = "The server is degraded; try again in a moment."


# -- 130: interrupted -----------------------------------------------------------------------


class UserInterruptError(ProvisionError):
    """Interrupted (Ctrl-C). The message says what state things were left in."""

    exit_code = 130
    http_status = None
    hint = ""


def describe_wait(seconds: int) -> str:
    """``720`` → ``"12 min"``, ``45`` → ``"45 s"``, ``7200`` → ``"2 h"`` (for Retry-After)."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{(seconds + 59) // 60} min"
    return f"{seconds / 3600:.1f} h".replace(".0 h", " h")


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected error (a bug; rerun with -v)",
    2: "usage error or invalid input",
    3: "timed out",
    4: "refused by the user, or number / confirmation code mismatch",
    5: "untrusted server",
    6: "server unreachable, failing or answering malformed data; TLS failure",
    7: "refused by the server (auth, code, device limit, channel gone, rate limit)",
    8: "a message failed authentication",
    9: "local store problem",
    130: "interrupted (Ctrl-C)",
}
