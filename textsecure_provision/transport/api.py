"""The server's HTTP API (§4): one method per endpoint, statuses mapped back to errors.

The server turns each ``ProvisionError`` into a status once; this module turns
the status back into the same class, per endpoint, because a status means
different things on different endpoints (a 404 on ``PUT /v1/messages/{uuid}``
is a gone channel, on ``DELETE /v1/devices/{id}`` an unknown device). Network
failures (connect, DNS, TLS, timeouts) are ``ServerUnreachableError``, each
described as what it is: a refused connection is not a read timeout, and a
read timeout means the request may have been handled. A 401 to a device that
has an id means the server no longer knows it (``DeviceUnlinkedError``).
Messages never include a password, a code or a body.

Request and answer bodies are the declarations of ``protocol/bodies.py``, the
same ones the server decodes with: the client encodes requests with them and
decodes every answer it reads with them (a malformed answer is
``RemoteProtocolError``: the server's fault, exit 6, never "check the input").
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from textsecure_provision import __version__
from textsecure_provision.clock import now_ms
from textsecure_provision.errors import (
    AuthError,
    ChannelGoneError,
    CodeRejectedError,
    ConflictError,
    DeviceLimitError,
    DeviceUnlinkedError,
    ForbiddenError,
    IdentityKeyMismatchError,
    InvalidInputError,
    MessageFormatError,
    MismatchedDevicesError,
    NotFoundError,
    PhoneNumberError,
    ProvisionError,
    RateLimitedError,
    RegistrationCodeRejectedError,
    RemoteProtocolError,
    ServerDegradedError,
    ServerRefusedError,
    ServerUnreachableError,
    StaleDevicesError,
    TooLargeError,
)
from textsecure_provision.protocol import bodies
from textsecure_provision.protocol.bodies import (
    DeviceAttributes,
    DeviceIdAnswer,
    DeviceList,
    KeyBundles,
    KeysUpload,
    MessageBatch,
    OutgoingMessage,
    OutgoingMessages,
    PreKeyCount,
    ProvisioningCode,
)
from textsecure_provision.transport.lean_httpx import httpx
from textsecure_provision.transport.streams import StreamTransport
from textsecure_provision.transport.tls import make_ssl_context, plain_http_context

log = logging.getLogger(__name__)
# httpx logs every request's full URL at INFO, and ours can hold codes (/v1/devices/{code},
# /v1/accounts/code/{code}): keep its records out of `-v` output. Our own debug line names
# only the route.
logging.getLogger("httpx").setLevel(logging.WARNING)

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
# Idle keep-alive connections are dropped sooner than servers drop them (uvicorn: 5 s, the
# same as httpx's default): with equal timeouts a request sent after a ~5 s pause can race
# the server's close and fail with a ReadError (seen in benchmarks/load_links.py).
KEEPALIVE_EXPIRY_S = 2.0
DEFAULT_RETRY_AFTER_S = 60
MAX_ERROR_TEXT = 200  # the server's error text is shown to the user, trimmed
MAX_RETRY_AFTER_DIGITS = 9  # int() of a 5000-digit header would raise, not wait
CHANNEL_MESSAGE_TYPE = 0  # §4: a channel takes one message; its type is not used

ErrorMap = Mapping[int, type[ProvisionError]]
T = TypeVar("T")
DeviceInfo = bodies.LinkedDevice  # one entry of GET /v1/devices/ (id, name, created, lastSeen)

# What each status means unless an endpoint says otherwise (§4 error column).
DEFAULT_ERRORS: ErrorMap = {
    400: ServerRefusedError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: StaleDevicesError,
    411: DeviceLimitError,
    413: TooLargeError,
    429: RateLimitedError,
    502: ServerUnreachableError,
    503: ServerDegradedError,
    504: ServerUnreachableError,
}


@dataclass(frozen=True)
class Credentials:
    """Basic auth (§4): ``number`` for device 1 or a device not yet numbered, else ``number.N``."""

    number: str
    password: str = field(repr=False)
    device_id: int | None = None

    @property
    def username(self) -> str:
        if self.device_id is None or self.device_id == 1:
            return self.number
        return f"{self.number}.{self.device_id}"


def _seg(value: str | int) -> str:
    # One path segment; '+' stays literal (E.164 numbers), everything else percent-encoded.
    return quote(str(value), safe="+")


class ApiClient:
    """An async client for one server. Use as ``async with ApiClient(url, creds) as api``."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        ca_file: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        verify: Any = (
            make_ssl_context(ca_file) if base_url.startswith("https:") else plain_http_context()
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            verify=verify,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            headers={"User-Agent": f"textsecure-provision/{__version__}"},
            follow_redirects=False,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
            transport=transport or StreamTransport(verify, keepalive_expiry=KEEPALIVE_EXPIRY_S),
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- accounts (§4) ----------------------------------------------------------------------
    async def request_registration_code(self, number: str) -> None:
        """``GET /v1/accounts/sms/code/{number}``: ask the server to deliver a code."""
        await self._call(
            "GET",
            f"/v1/accounts/sms/code/{_seg(number)}",
            what="requesting a registration code",
            auth=False,
            errors={400: PhoneNumberError, 413: RateLimitedError},
        )

    async def register_account(
        self, code: str, *, registration_id: int, name: str | None = None
    ) -> int:
        """``PUT /v1/accounts/code/{code}`` as the new master; returns its device id (1)."""
        answer = await self._call(
            "PUT",
            f"/v1/accounts/code/{_seg(code)}",
            what="registering the account",
            body=DeviceAttributes(registration_id, name=name or None),
            answer=DeviceIdAnswer,
            errors={403: RegistrationCodeRejectedError},
        )
        return answer.device_id

    # -- devices (§4) -----------------------------------------------------------------------
    async def fetch_provisioning_code(self) -> str:
        """``GET /v1/devices/provisioning_code``: a fresh single-use code (decimal digits)."""
        answer = await self._call(
            "GET",
            "/v1/devices/provisioning_code",
            what="requesting a provisioning code",
            answer=ProvisioningCode,
        )
        return answer.verification_code

    async def register_device(
        self, code: str, *, registration_id: int, name: str | None = None
    ) -> int:
        """``PUT /v1/devices/{code}`` with the new device's credentials; returns its id."""
        answer = await self._call(
            "PUT",
            f"/v1/devices/{_seg(code)}",
            what="registering this device with the provisioning code",
            body=DeviceAttributes(registration_id, name=name or None),
            answer=DeviceIdAnswer,
            errors={403: CodeRejectedError},
        )
        return answer.device_id

    async def fetch_devices(self) -> list[DeviceInfo]:
        answer = await self._call("GET", "/v1/devices/", what="listing devices", answer=DeviceList)
        return answer.devices

    async def remove_device(self, device_id: int) -> None:
        await self._call(
            "DELETE",
            f"/v1/devices/{_seg(device_id)}",
            what=f"removing device {device_id}",
            errors={404: NotFoundError},
        )

    # -- keys (§4) ----------------------------------------------------------------------------
    async def upload_keys(self, body: KeysUpload) -> None:
        """``PUT /v1/keys`` with the body built by ``protocol.prekeys.build_keys_upload``."""
        await self._call(
            "PUT",
            "/v1/keys",
            what="uploading keys",
            body=body,
            errors={409: IdentityKeyMismatchError},
        )

    async def fetch_prekey_count(self) -> int:
        answer = await self._call("GET", "/v1/keys/", what="counting prekeys", answer=PreKeyCount)
        return answer.count

    async def fetch_keys(self, number: str, device: int | str = "*") -> KeyBundles:
        """``GET /v1/keys/{number}/{device}``: the bundles (made into sessions by flows)."""
        return await self._call(
            "GET",
            f"/v1/keys/{_seg(number)}/{_seg(device)}",
            what=f"fetching keys of {number}",
            answer=KeyBundles,
        )

    # -- messages (§4) ----------------------------------------------------------------------
    async def send_messages(self, destination: str, messages: Sequence[OutgoingMessage]) -> None:
        """``PUT /v1/messages/{number}``: 409/410 carry the device lists to fix."""
        await self._call(
            "PUT",
            f"/v1/messages/{_seg(destination)}",
            what=f"sending to {destination}",
            body=OutgoingMessages(list(messages)),
            errors={409: MismatchedDevicesError, 410: StaleDevicesError},
        )

    async def send_to_channel(self, channel_uuid: str, device_init: bytes) -> None:
        """``PUT /v1/messages/{uuid}``: the one DeviceInit; 404 means the channel is gone."""
        # The full message shape, though a channel uses only the body (§4.1).
        message = OutgoingMessage(
            type=CHANNEL_MESSAGE_TYPE,
            destination_device_id=1,
            body=device_init,
            timestamp=now_ms(),
        )
        await self._call(
            "PUT",
            f"/v1/messages/{_seg(channel_uuid)}",
            what="sending to the new device's channel",
            body=OutgoingMessages([message]),
            errors={404: ChannelGoneError},
        )

    async def fetch_messages(
        self, wait_s: float | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        params = {"wait": str(int(wait_s))} if wait_s else None
        timeout = httpx.Timeout(READ_TIMEOUT_S + (wait_s or 0), connect=CONNECT_TIMEOUT_S)
        batch = await self._call(
            "GET",
            "/v1/messages/",
            what="fetching messages",
            params=params,
            timeout=timeout,
            answer=MessageBatch,
        )
        return batch.messages, batch.more

    async def ack_message(self, guid: str) -> None:
        await self._call("DELETE", f"/v1/messages/{_seg(guid)}", what="acknowledging a message")

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        """One request with this client's error mapping (for transport/nameplates.py)."""
        return await self._call(method, path, **kw)

    # -- the one place statuses become errors -------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        answer: type[T] | None = None,
        auth: bool = True,
        errors: ErrorMap | None = None,
        body: bodies.Body | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> T:
        """The answer decoded as ``answer``; with ``answer=None`` the body is not read."""
        kwargs: dict[str, Any] = {}
        if auth:
            if self.credentials is None:
                raise AuthError(f"{what}: this device has no credentials")
            kwargs["auth"] = httpx.BasicAuth(self.credentials.username, self.credentials.password)
        sent = dict(headers or {})
        if body is not None:
            kwargs["content"] = bodies.encode(body)
            sent["Content-Type"] = "application/json"
        if sent:
            kwargs["headers"] = sent
        if params:
            kwargs["params"] = params
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.InvalidURL as exc:
            raise InvalidInputError(f"the server URL {self.base_url} is not usable") from exc
        except httpx.TransportError as exc:
            raise transport_error(exc, what, self.base_url) from exc
        log.debug("%s %s -> %s", method, path.split("/")[1:3], response.status_code)
        if not response.is_success:
            raise self._refusal(response, what, errors)
        if answer is None:
            return None  # type: ignore[return-value]  # the caller reads no answer
        try:
            return bodies.decode(response.content, answer)
        except MessageFormatError as exc:
            raise RemoteProtocolError(
                f"{what}: the server's answer is malformed ({exc.message})"
            ) from None

    def _refusal(
        self, response: httpx.Response, what: str, errors: ErrorMap | None
    ) -> ProvisionError:
        error = error_for_response(response, what, errors)
        creds = self.credentials
        # Credentials with a device id come from a stored record (or a registration that just
        # succeeded): a 401 then means the server dropped the device, not a typo.
        if isinstance(error, AuthError) and creds is not None and creds.device_id is not None:
            unlinked = DeviceUnlinkedError(
                f"{what}: the server no longer accepts this device (device {creds.device_id} "
                f"of {creds.number}; HTTP {response.status_code}): it was removed from the "
                "account, or the account was registered again"
            )
            unlinked.__cause__ = error
            return unlinked
        return error


def error_for_response(
    response: httpx.Response, what: str, errors: ErrorMap | None = None
) -> ProvisionError:
    """The ``ProvisionError`` for a non-2xx answer, per the endpoint's ``errors`` map."""
    status = response.status_code
    cls = (errors or {}).get(status) or DEFAULT_ERRORS.get(status)
    if cls is None:
        cls = ServerUnreachableError if status >= 500 else ServerRefusedError
    body: Any = None
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    text = body.get("error") if isinstance(body, dict) else None
    detail = f"HTTP {status}"
    if isinstance(text, str) and text:
        clean = "".join(c if c.isprintable() else "?" for c in text)[:MAX_ERROR_TEXT]
        detail = f"{detail}: {clean}"
    verb = "failed" if cls is ServerUnreachableError else "refused"
    message = f"{what}: the server {verb} ({detail})"
    if issubclass(cls, RateLimitedError):
        return cls(message, retry_after=_retry_after(response))
    if issubclass(cls, ServerDegradedError):
        retry = _retry_after(response) if "Retry-After" in response.headers else None
        return cls(message, retry_after=retry)
    if issubclass(cls, MismatchedDevicesError):
        missing, extra = _int_list(body, "missingDevices"), _int_list(body, "extraDevices")
        return cls(message, missing=missing, extra=extra)
    if issubclass(cls, StaleDevicesError):
        return cls(message, stale=_int_list(body, "staleDevices"))
    return cls(message)


def transport_error(exc: httpx.TransportError, what: str, base_url: str) -> ProvisionError:
    """What went wrong on the wire, named as it was: not every failure is "cannot connect"."""
    tls = _tls_failure(exc, base_url)
    if tls is not None:
        return ServerUnreachableError(f"{what}: {tls}")
    if isinstance(exc, httpx.ConnectTimeout):
        return ServerUnreachableError(
            f"{what}: no answer from {base_url} within {CONNECT_TIMEOUT_S:.0f} s while connecting"
        )
    if isinstance(exc, httpx.ConnectError):
        return ServerUnreachableError(f"{what}: {_connect_failure(exc, base_url)}")
    if isinstance(exc, httpx.ReadTimeout):
        return ServerUnreachableError(
            f"{what}: {base_url} took the request but did not answer in time",
            hint=MAY_HAVE_HAPPENED_HINT,
        )
    if isinstance(exc, (httpx.WriteTimeout, httpx.PoolTimeout)):
        return ServerUnreachableError(f"{what}: sending to {base_url} did not finish in time")
    if isinstance(exc, httpx.RemoteProtocolError) and not _closed_early(exc):
        return RemoteProtocolError(f"{what}: {base_url} did not answer in HTTP")
    if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
        return ServerUnreachableError(
            f"{what}: the connection to {base_url} broke before the answer came",
            hint=MAY_HAVE_HAPPENED_HINT,
        )
    if isinstance(exc, httpx.ProxyError):
        return ServerUnreachableError(f"{what}: the proxy refused the connection to {base_url}")
    return ServerUnreachableError(f"{what}: talking to {base_url} failed ({type(exc).__name__})")


MAY_HAVE_HAPPENED_HINT = (
    "The server may have handled the request all the same. Try again in a moment; if it "
    "keeps happening the server is overloaded or something between you and it drops answers."
)


def _closed_early(exc: httpx.RemoteProtocolError) -> bool:
    # httpx reports a connection closed mid-answer as a protocol error too; that is a broken
    # connection (the request may have been handled), not a server speaking nonsense.
    text = str(exc).lower()
    return "disconnected" in text or "peer closed" in text


def _causes(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(out) < 16:
        out.append(cause)
        cause = cause.__cause__ or cause.__context__
    return out


def _tls_failure(exc: BaseException, base_url: str) -> str | None:
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"the TLS certificate of {base_url} could not be verified ({cause.verify_message})"
            )
        if isinstance(cause, ssl.SSLError):
            return f"the TLS connection to {base_url} failed"
    return None


def _connect_failure(exc: BaseException, base_url: str) -> str:
    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            return f"cannot find the host of {base_url} (DNS: {cause.strerror or cause})"
        if isinstance(cause, ConnectionRefusedError):
            return f"cannot connect to {base_url}: connection refused (is the server running?)"
        if isinstance(cause, OSError) and cause.strerror:
            return f"cannot connect to {base_url}: {cause.strerror}"
    return f"cannot connect to {base_url}"


def _retry_after(response: httpx.Response) -> int:
    value = response.headers.get("Retry-After", "")
    return int(value) if _ascii_digits(value, MAX_RETRY_AFTER_DIGITS) else DEFAULT_RETRY_AFTER_S


def _ascii_digits(value: str, max_len: int | None = None) -> bool:
    # str.isdecimal() also accepts other scripts' digits ("١٢٣"), which are not the wire's.
    return value.isascii() and value.isdigit() and (max_len is None or len(value) <= max_len)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(doc: Any, name: str) -> list[int]:
    value = doc.get(name) if isinstance(doc, dict) else None
    return [v for v in value if _is_int(v)] if isinstance(value, list) else []
