"""The client transport: each endpoint's statuses map back to the right error; the channel frames.

HTTP statuses the reference server rarely produces (411, 413, 429, 502) are
answered by an ``httpx.MockTransport``; the channel tests run a scripted
websocket server on a real loopback socket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from textsecure_provision import errors as E
from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.protocol.prekeys import build_keys_upload, generate_signed_prekey
from textsecure_provision.transport.api import ApiClient, Credentials, DeviceInfo
from textsecure_provision.transport.channel import TempChannel, channel_url

UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
NUMBER = "+15550001111"


def client(
    handler: Callable[[httpx.Request], httpx.Response], device_id: int | None = 2
) -> ApiClient:
    return ApiClient(
        "http://relay.test",
        Credentials(NUMBER, "secret-password", device_id),
        transport=httpx.MockTransport(handler),
    )


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if body is None:
            return httpx.Response(status, json={"error": "nope", "code": status}, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler, seen


KEYS = build_keys_upload(
    KeyPair.generate().public, generate_signed_prekey(KeyPair.generate(), 1), []
)
CALLS: dict[str, Callable[[ApiClient], Awaitable[Any]]] = {
    "sms": lambda api: api.request_registration_code(NUMBER),
    "register_account": lambda api: api.register_account("123456", registration_id=5),
    "provisioning_code": lambda api: api.fetch_provisioning_code(),
    "register_device": lambda api: api.register_device("123456789", registration_id=5),
    "devices": lambda api: api.fetch_devices(),
    "remove": lambda api: api.remove_device(3),
    "keys": lambda api: api.upload_keys(KEYS),
    "channel": lambda api: api.send_to_channel(UUID, b"device-init"),
    "send": lambda api: api.send_messages(NUMBER, []),
}


@pytest.mark.parametrize(
    ("call", "status", "expected"),
    [
        ("sms", 400, E.PhoneNumberError),
        ("sms", 413, E.RateLimitedError),
        ("sms", 429, E.RateLimitedError),
        ("register_account", 403, E.RegistrationCodeRejectedError),
        ("provisioning_code", 401, E.DeviceUnlinkedError),
        ("provisioning_code", 411, E.DeviceLimitError),
        ("provisioning_code", 429, E.RateLimitedError),
        ("register_device", 403, E.CodeRejectedError),
        ("register_device", 411, E.DeviceLimitError),
        ("register_device", 429, E.RateLimitedError),
        ("devices", 401, E.DeviceUnlinkedError),
        ("remove", 403, E.ForbiddenError),
        ("remove", 404, E.NotFoundError),
        ("keys", 400, E.ServerRefusedError),
        ("keys", 409, E.IdentityKeyMismatchError),
        ("keys", 413, E.TooLargeError),
        ("channel", 404, E.ChannelGoneError),
        ("channel", 413, E.TooLargeError),
        ("send", 409, E.MismatchedDevicesError),
        ("send", 410, E.StaleDevicesError),
        ("devices", 500, E.ServerUnreachableError),
        ("devices", 503, E.ServerDegradedError),
        ("devices", 418, E.ServerRefusedError),
    ],
)
async def test_status_maps_to_error(call: str, status: int, expected: type) -> None:
    handler, _ = answer(status)
    async with client(handler) as api:
        with pytest.raises(E.ProvisionError) as info:
            await CALLS[call](api)
    assert type(info.value) is expected
    assert f"HTTP {status}" in info.value.message
    assert "secret-password" not in info.value.message


async def test_exit_codes_of_mapped_errors() -> None:
    handler, _ = answer(404)
    async with client(handler) as api:
        with pytest.raises(E.ChannelGoneError) as info:
            await api.send_to_channel(UUID, b"x")
    assert info.value.exit_code == 7
    assert "restart `provision secondary`" in info.value.hint.lower()


async def test_rate_limit_carries_retry_after() -> None:
    handler, _ = answer(429, headers={"Retry-After": "17"})
    async with client(handler) as api:
        with pytest.raises(E.RateLimitedError) as info:
            await api.fetch_provisioning_code()
    assert info.value.retry_after == 17
    assert "17 s" in info.value.hint


async def test_rate_limit_hint_shows_the_servers_wait() -> None:
    # Not "wait a little": the server said 12 minutes, and the user is told so.
    handler, _ = answer(429, headers={"Retry-After": "720"})
    async with client(handler) as api:
        with pytest.raises(E.RateLimitedError) as info:
            await api.register_device("123456789", registration_id=5)
    assert info.value.hint == (
        "The server asks to wait 12 min (Retry-After: 720); try again after that."
    )


async def test_401_to_a_stored_device_says_it_is_no_longer_linked() -> None:
    handler, _ = answer(401)
    async with client(handler, device_id=3) as api:
        with pytest.raises(E.DeviceUnlinkedError) as info:
            await api.fetch_devices()
    assert "no longer accepts this device (device 3 of +15550001111" in info.value.message
    assert "provision reset" in info.value.hint
    assert info.value.exit_code == 7


async def test_401_without_a_device_id_stays_an_auth_error() -> None:
    # A registration's credentials have no id yet: a 401 there is not "no longer linked".
    handler, _ = answer(401)
    async with client(handler, device_id=None) as api:
        with pytest.raises(E.AuthError) as info:
            await api.register_device("123456789", registration_id=5)
    assert type(info.value) is E.AuthError


async def test_wrong_registration_code_hint_is_about_the_code() -> None:
    handler, _ = answer(403)
    async with client(handler, device_id=None) as api:
        with pytest.raises(E.CodeRejectedError) as info:
            await api.register_account("123456", registration_id=5)
    assert "secondary" not in info.value.hint
    assert "registration code" in info.value.hint


async def test_503_is_the_servers_dependency_not_your_network() -> None:
    handler, _ = answer(503, headers={"Retry-After": "30"})
    async with client(handler) as api:
        with pytest.raises(E.ServerDegradedError) as info:
            await api.fetch_devices()
    assert info.value.exit_code == 6
    assert "--ca-file" not in info.value.hint and "your network" not in info.value.hint
    assert "30 s" in info.value.hint


async def test_malformed_success_answer_is_the_servers_fault() -> None:
    handler, _ = answer(200, {"deviceId": "two"})
    async with client(handler) as api:
        with pytest.raises(E.RemoteProtocolError) as info:
            await api.register_device("123456789", registration_id=5)
    assert info.value.exit_code == 6  # not 2, "check the input": the user typed nothing wrong
    assert not isinstance(info.value, E.InvalidInputError)
    assert "Check the input" not in info.value.hint


async def test_mismatched_devices_carry_lists() -> None:
    handler, _ = answer(409, {"missingDevices": [2, 3], "extraDevices": [9]})
    async with client(handler) as api:
        with pytest.raises(E.MismatchedDevicesError) as info:
            await api.send_messages(NUMBER, [])
    assert (info.value.missing, info.value.extra) == ([2, 3], [9])


async def test_stale_devices_carry_list() -> None:
    handler, _ = answer(410, {"staleDevices": [4]})
    async with client(handler) as api:
        with pytest.raises(E.StaleDevicesError) as info:
            await api.send_messages(NUMBER, [])
    assert info.value.stale == [4]


async def test_server_error_text_is_trimmed_and_sanitised() -> None:
    handler, _ = answer(403, {"error": "bad\x1b[31m" + "x" * 500, "code": 403})
    async with client(handler) as api:
        with pytest.raises(E.CodeRejectedError) as info:
            await api.register_device("123456789", registration_id=1)
    assert "\x1b" not in info.value.message
    assert len(info.value.message) < 300


async def test_basic_auth_username_per_device() -> None:
    handler, seen = answer(200, {"devices": []})
    async with client(handler, device_id=1) as api:
        await api.fetch_devices()
    async with client(handler, device_id=3) as api:
        await api.fetch_devices()
    async with client(handler, device_id=None) as api:
        await api.fetch_devices()
    decoded = [base64.b64decode(r.headers["authorization"].split()[1]).decode() for r in seen]
    assert decoded == [
        f"{NUMBER}:secret-password",
        f"{NUMBER}.3:secret-password",
        f"{NUMBER}:secret-password",
    ]


async def test_sms_code_request_sends_no_auth_and_keeps_plus() -> None:
    handler, seen = answer(200, {})
    async with client(handler) as api:
        await api.request_registration_code(NUMBER)
    assert "authorization" not in seen[0].headers
    assert seen[0].url.raw_path == b"/v1/accounts/sms/code/+15550001111"


async def test_channel_put_body_shape() -> None:
    handler, seen = answer(200, {})
    async with client(handler) as api:
        await api.send_to_channel(UUID, b"\x01\x02\x03")
    req = seen[0]
    assert req.method == "PUT" and req.url.path == f"/v1/messages/{UUID}"
    (message,) = json.loads(req.content)["messages"]
    assert message["body"] == "AQID"
    assert isinstance(message["timestamp"], int)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"verificationCode": 123456789},
        {"verificationCode": "12345"},
        {"verificationCode": "12ab56789"},
        {"verificationCode": "1234567890"},
    ],
)
async def test_bad_provisioning_code_answer_is_refused(body: dict[str, Any]) -> None:
    handler, _ = answer(200, body)
    async with client(handler) as api:
        with pytest.raises(E.RemoteProtocolError):
            await api.fetch_provisioning_code()


async def test_non_json_success_is_message_format_error() -> None:
    async with client(lambda r: httpx.Response(200, content=b"<html>")) as api:
        with pytest.raises(E.RemoteProtocolError):
            await api.register_device("123456", registration_id=1)


async def test_device_list_is_parsed() -> None:
    handler, _ = answer(
        200, {"devices": [{"id": 1, "name": "a", "created": 5, "lastSeen": 6}, {"id": 2}]}
    )
    async with client(handler) as api:
        found = await api.fetch_devices()
    assert found == [DeviceInfo(1, "a", 5, 6), DeviceInfo(2, None, None, None)]


@pytest.mark.parametrize("body", [{"devices": "x"}, {"devices": [{"id": "1"}]}, []])
async def test_malformed_device_list_is_refused(body: Any) -> None:
    handler, _ = answer(200, body)
    async with client(handler) as api:
        with pytest.raises(E.RemoteProtocolError):
            await api.fetch_devices()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_unreachable() -> None:
    api = ApiClient(f"http://127.0.0.1:{free_port()}", Credentials(NUMBER, "pw"))
    async with api:
        with pytest.raises(E.ServerUnreachableError) as info:
            await api.fetch_devices()
    assert info.value.exit_code == 6
    assert "connection refused" in info.value.message


async def _tcp_server(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]):
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_read_timeout_is_not_cannot_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real socket that takes the request and never answers: the connection worked, so
    # "cannot connect" would be false, and the request may have been handled.
    monkeypatch.setattr("textsecure_provision.transport.api.READ_TIMEOUT_S", 0.3)
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()
        writer.close()

    server, url = await _tcp_server(silent)
    async with server, ApiClient(url, Credentials(NUMBER, "pw", 2)) as api:
        with pytest.raises(E.ServerUnreachableError) as info:
            await api.fetch_devices()
        release.set()
    assert "cannot connect" not in info.value.message
    assert "did not answer in time" in info.value.message
    assert "may have handled the request" in info.value.hint


def reply_once(data: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    """A raw server that reads one request head, writes ``data`` and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        await writer.drain()
        writer.close()

    return handle


@pytest.mark.parametrize(
    ("reply", "expected", "says"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{",
            E.ServerUnreachableError,
            "broke before the answer came",
            id="dropped-mid-answer",
        ),
        pytest.param(
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
            E.RemoteProtocolError,
            "did not answer in HTTP",
            id="not-http-is-the-servers-fault",
        ),
    ],
)
async def test_a_broken_answer_is_not_cannot_connect(
    reply: bytes, expected: type[E.ProvisionError], says: str
) -> None:
    server, url = await _tcp_server(reply_once(reply))
    async with server, ApiClient(url, Credentials(NUMBER, "pw", 2)) as api:
        with pytest.raises(expected) as info:
            await api.fetch_devices()
    assert type(info.value) is expected
    assert "cannot connect" not in info.value.message
    assert says in info.value.message


async def test_unknown_host_says_dns() -> None:
    async with ApiClient("http://no-such-host.invalid", Credentials(NUMBER, "pw", 2)) as api:
        with pytest.raises(E.ServerUnreachableError) as info:
            await api.fetch_devices()
    assert "cannot find the host" in info.value.message


async def test_tls_failure_is_unreachable(tmp_path) -> None:
    # A plain-TCP listener that closes at once: the TLS handshake fails.
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, ApiClient(f"https://127.0.0.1:{port}", Credentials(NUMBER, "pw")) as api:
        with pytest.raises(E.ServerUnreachableError):
            await api.fetch_devices()


def test_missing_ca_file_is_unreachable(tmp_path) -> None:
    with pytest.raises(E.ServerUnreachableError, match="CA file"):
        ApiClient("https://relay.test", ca_file=str(tmp_path / "none.pem"))


# -- the channel (§4.1) against a scripted websocket server -------------------------------------

Script = Callable[[ServerConnection], Awaitable[None]]


async def run_channel_server(script: Script, process_request: Any = None):
    return await serve(script, "127.0.0.1", 0, process_request=process_request)


def url_of(server: Any) -> str:
    port = server.sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}"


def frames_then(*frames: str, close: int | None = None) -> Script:
    """A channel server that sends ``frames``, then closes with ``close`` (None: waits for
    the client to go)."""

    async def script(ws: ServerConnection) -> None:
        for frame in frames:
            await ws.send(frame)
        if close is None:
            await ws.wait_closed()
        else:
            await ws.close(close)

    return script


@contextlib.asynccontextmanager
async def opened_channel(script: Script) -> AsyncIterator[TempChannel]:
    """A channel opened on a server running ``script``."""
    async with (
        await run_channel_server(script) as server,
        await TempChannel.open(url_of(server)) as channel,
    ):
        yield channel


OPENED = json.dumps({"uuid": UUID})


async def test_channel_yields_uuid_then_message() -> None:
    script = frames_then(json.dumps({"uuid": UUID.upper()}), json.dumps({"message": "AQID"}), close=1000)
    async with opened_channel(script) as channel:
        assert channel.uuid == UUID
        assert await channel.receive() == b"\x01\x02\x03"


async def test_channel_close_1001_means_expired() -> None:
    async with opened_channel(frames_then(OPENED, close=1001)) as channel:
        assert await channel.receive() is None


async def test_channel_close_1000_without_message_is_refused() -> None:
    async with opened_channel(frames_then(OPENED, close=1000)) as channel:
        with pytest.raises(E.ServerRefusedError):
            await channel.receive()


@pytest.mark.parametrize(
    "first", ["not json", json.dumps([UUID]), json.dumps({"uuid": "nope"}), json.dumps({})]
)
async def test_bad_first_frame_is_message_format_error(first: str) -> None:
    async with await run_channel_server(frames_then(first)) as server:
        with pytest.raises(E.RemoteProtocolError):
            await TempChannel.open(url_of(server))


@pytest.mark.parametrize(
    "frame", ["{", json.dumps({"message": "%%%"}), json.dumps({"message": 5}), json.dumps({"x": 1})]
)
async def test_bad_message_frame_is_message_format_error(frame: str) -> None:
    async with opened_channel(frames_then(OPENED, frame)) as channel:
        with pytest.raises(E.RemoteProtocolError):
            await channel.receive()


@pytest.mark.parametrize(
    ("status", "reason", "retry_after", "expected", "hint"),
    [
        (429, "Too Many Requests", 9, E.RateLimitedError, "9 s"),
        (503, "Service Unavailable", 720, E.ServerDegradedError, "12 min"),
    ],
)
async def test_channel_handshake_refusal_carries_retry_after(
    status: int, reason: str, retry_after: int, expected: type[E.ProvisionError], hint: str
) -> None:
    def refuse(connection: Any, request: Any) -> Response:
        return Response(status, reason, Headers({"Retry-After": str(retry_after)}), b"")

    async def script(ws: ServerConnection) -> None:  # never reached
        await ws.close()

    async with await run_channel_server(script, process_request=refuse) as server:
        with pytest.raises(expected) as info:
            await TempChannel.open(url_of(server))
    assert type(info.value) is expected
    assert getattr(info.value, "retry_after", None) == retry_after
    assert hint in info.value.hint


async def test_channel_on_a_plain_http_server_is_the_servers_fault() -> None:
    server, url = await _tcp_server(reply_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    async with server:
        with pytest.raises(E.RemoteProtocolError) as info:
            await TempChannel.open(url)
    assert "did not accept a websocket" in info.value.message


async def test_channel_server_silent_is_unreachable() -> None:
    async with await run_channel_server(frames_then()) as server:
        with pytest.raises(E.ServerUnreachableError, match="did not name"):
            await TempChannel.open(url_of(server), open_timeout_s=0.3)


async def test_channel_connection_refused_is_unreachable() -> None:
    with pytest.raises(E.ServerUnreachableError) as info:
        await TempChannel.open(f"http://127.0.0.1:{free_port()}")
    assert "connection refused" in info.value.message


def test_channel_url() -> None:
    assert channel_url("https://relay.example.org") == "wss://relay.example.org/v1/temp_websocket"
    assert channel_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/v1/temp_websocket"
    with pytest.raises(E.InvalidInputError):
        channel_url("ftp://x")
