"""A compromised or impersonated server: the client's parsing of whatever comes back.

A real hostile server (uvicorn on loopback, over real sockets) answers every HTTP request
with a status, headers and body chosen by hypothesis, and every channel with frames and a
close code chosen by hypothesis. Every API call and the channel must then end in a
``ProvisionError`` (a clean exit code and message) or a well-typed value, never in another
exception (exit 1, "a bug").
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from hypothesis import example, given
from hypothesis import strategies as st

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.errors import ProvisionError
from textsecure_provision.protocol.bodies import KeyBundles, OutgoingMessage
from textsecure_provision.protocol.prekeys import build_keys_upload, generate_signed_prekey
from textsecure_provision.transport.api import ApiClient, Credentials, DeviceInfo
from textsecure_provision.transport.channel import TempChannel

from .support import fuzz

pytestmark = pytest.mark.fuzz


@dataclass
class Behaviour:
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b"{}"
    frames: list[str | bytes] = field(default_factory=list)
    close_code: int = 1000


class HostileServer:
    """ASGI: answers with ``self.behaviour``, whatever was asked."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        b = self.behaviour
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await receive()
            if b.status != 200:  # refuse the upgrade with a plain HTTP answer
                await send(
                    {"type": "websocket.http.response.start", "status": b.status, "headers": b.headers}
                )
                await send({"type": "websocket.http.response.body", "body": b.body})
                return
            await send({"type": "websocket.accept"})
            for frame in b.frames:
                key = "bytes" if isinstance(frame, bytes) else "text"
                await send({"type": "websocket.send", key: frame})
            await send({"type": "websocket.close", "code": b.close_code})
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": b.status, "headers": b.headers})
        await send({"type": "http.response.body", "body": b.body})


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[HostileServer, str]]:
    app = HostileServer()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", ws="websockets-sansio", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("hostile server did not start")
        threading.Event().wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=12),
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Shapes close to the real answers, with wrong values, so the per-field checks are reached.
near_answers = st.fixed_dictionaries(
    {},
    optional={
        "deviceId": json_values,
        "verificationCode": st.one_of(json_values, st.from_regex(r"[0-9٠-٩]{5,10}", fullmatch=True)),
        "count": json_values,
        "devices": st.lists(
            st.fixed_dictionaries({}, optional={k: json_values for k in ("id", "name", "created", "lastSeen")}),
            max_size=3,
        )
        | json_values,
        "messages": st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=3), max_size=3)
        | json_values,
        "more": json_values,
        "error": json_values,
        "missingDevices": json_values,
        "extraDevices": json_values,
        "staleDevices": json_values,
    },
)
bodies = st.one_of(
    near_answers.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.just(b"[" * 50_000),
)
header_values = st.one_of(
    st.from_regex(r"[0-9]{1,6}", fullmatch=True),
    st.integers(4300, 8000).map(lambda n: "9" * n),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
    st.just("١٢"),
)
statuses = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 409, 410, 411, 413, 418, 429, 500, 502, 503, 599])


@st.composite
def behaviours(draw: st.DrawFn) -> Behaviour:
    headers = [(b"content-type", b"application/json")]
    if draw(st.booleans()):
        headers.append((b"retry-after", draw(header_values).encode("utf-8")))
    status = draw(statuses)
    return Behaviour(status=status, headers=headers, body=b"" if status == 204 else draw(bodies))


KEYS = build_keys_upload(KeyPair.generate().public, generate_signed_prekey(KeyPair.generate(), 1), [])
CALLS = [
    ("request_registration_code", ("+15550001111",), None),
    ("register_account", ("123456",), {"registration_id": 5}),
    ("fetch_provisioning_code", (), None),
    ("register_device", ("123456789",), {"registration_id": 5}),
    ("fetch_devices", (), None),
    ("remove_device", (2,), None),
    ("upload_keys", (KEYS,), None),
    ("fetch_prekey_count", (), None),
    ("fetch_keys", ("+15550001111",), None),
    ("send_messages", ("+15550001111", [OutgoingMessage(1, 1, b"x")]), None),
    ("send_to_channel", ("0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10", b"init"), None),
    ("fetch_messages", (), None),
    ("ack_message", ("0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10",), None),
]


def check_result(name: str, result: Any) -> None:
    """A value the flows can use as it is."""
    if name in ("register_account", "register_device"):
        assert isinstance(result, int) and not isinstance(result, bool)
        assert 1 <= result <= 2**31 - 1, f"{name} returned device id {result}"
    elif name == "fetch_provisioning_code":
        assert isinstance(result, str) and result.isascii() and result.isdigit()
        assert 6 <= len(result) <= 9
        int(result)
    elif name == "fetch_devices":
        assert all(isinstance(d, DeviceInfo) and isinstance(d.id, int) for d in result)
    elif name == "fetch_prekey_count":
        assert isinstance(result, int) and result >= 0
    elif name == "fetch_keys":
        assert isinstance(result, KeyBundles) and result.devices
    elif name == "fetch_messages":
        messages, more = result
        assert isinstance(messages, list) and isinstance(more, bool)


@fuzz(60)
@given(behaviours(), st.sampled_from(CALLS))
@example(Behaviour(429, [(b"retry-after", b"9" * 5000)], b"{}"), CALLS[0])
@example(Behaviour(200, [], b"[" * 50_000), CALLS[2])
@example(Behaviour(403, [], b"[" * 50_000), CALLS[3])
@example(Behaviour(200, [], b'{"deviceId": -3}'), CALLS[3])
@example(Behaviour(200, [], b'{"deviceId": 0}'), CALLS[1])
@example(Behaviour(200, [], b'{"verificationCode": "\\u0661\\u0662\\u0663\\u0664\\u0665\\u0666"}'), CALLS[2])
@example(Behaviour(200, [], b'{"count": -1}'), CALLS[7])
def test_any_http_answer_ends_cleanly(
    hostile: tuple[HostileServer, str], behaviour: Behaviour, call: tuple[str, tuple[Any, ...], Any]
) -> None:
    server, url = hostile
    server.behaviour = behaviour
    name, args, kwargs = call

    async def go() -> Any:
        async with ApiClient(url, Credentials("+15550001111", "pw" * 10, 2)) as api:
            return await getattr(api, name)(*args, **(kwargs or {}))

    try:
        result = asyncio.run(go())
    except ProvisionError as exc:
        assert exc.exit_code in range(2, 10)
        assert len(exc.message) < 1000  # the server's text is trimmed
        return
    check_result(name, result)


frames = st.one_of(
    st.sampled_from(
        [
            '{"uuid": "0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10"}',
            '{"uuid": "0B7E7A3C-6F1E-4C1D-9A57-3F1F2D5C9E10"}',
            '{"message": "AAAA"}',
            '{"message": "!!"}',
            '{"message": 5}',
            "[" * 50_000,
        ]
    ),
    json_values.map(json.dumps),
    st.binary(max_size=40),
)


@fuzz(60)
@given(
    st.lists(frames, max_size=3),
    st.sampled_from([1000, 1001, 1008, 1011, 4000]),
    st.one_of(st.just(200), behaviours()),
)
@example(['{"uuid": "0b7e7a3c-6f1e-4c1d-9a57-3f1f2d5c9e10"}', "[" * 50_000], 1000, 200)
@example(["[" * 50_000], 1000, 200)
@example([], 1000, Behaviour(429, [(b"retry-after", b"9" * 5000)], b"{}"))
def test_any_channel_frames_end_cleanly(
    hostile: tuple[HostileServer, str],
    sent: list[str | bytes],
    close_code: int,
    upgrade: int | Behaviour,
) -> None:
    server, url = hostile
    refusal = upgrade if isinstance(upgrade, Behaviour) else Behaviour()
    server.behaviour = Behaviour(
        status=refusal.status if refusal.status != 204 else 400,
        headers=refusal.headers,
        body=refusal.body,
        frames=sent,
        close_code=close_code,
    )

    async def go() -> tuple[str, bytes | None]:
        channel = await TempChannel.open(url, open_timeout_s=5)
        async with channel:
            return channel.uuid, await channel.receive()

    try:
        uuid, body = asyncio.run(go())
    except ProvisionError as exc:
        assert exc.exit_code in range(2, 10)
        return
    assert uuid == uuid.lower() and len(uuid) == 36
    assert body is None or isinstance(body, bytes)
