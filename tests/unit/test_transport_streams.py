"""The client's HTTP/1.1 transport (transport/streams.py) against scripted loopback peers:
keep-alive reuse and when a connection is not reused, and every way an answer can fail,
each raised as the httpx exception that ``transport_error`` names."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from textsecure_provision import errors as E
from textsecure_provision.transport import streams
from textsecure_provision.transport.api import ApiClient
from textsecure_provision.transport.streams import StreamTransport

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"count":3}'


async def read_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return head


@asynccontextmanager
async def peer(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server running ``script`` on each connection; yields its URL and a list
    that grows by one per connection."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


def http(url: str, *, expiry: float = 5.0, timeout: float = 5.0) -> httpx.AsyncClient:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return httpx.AsyncClient(
        base_url=url, transport=StreamTransport(ctx, keepalive_expiry=expiry), timeout=timeout
    )


async def answers_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_head(reader)
        writer.write(OK)
        await writer.drain()


async def test_one_connection_carries_the_requests_one_after_another() -> None:
    async with peer(answers_forever) as (url, connections), http(url) as client:
        for _ in range(3):
            response = await client.get("/v1/keys/")
            assert (response.status_code, response.json()) == (200, {"count": 3})
            assert response.headers["content-type"] == "application/json"
        posted = await client.put("/v1/keys", content=b'{"a": 1}')
        assert posted.status_code == 200
    assert connections == [0]


async def test_requests_at_once_each_get_a_connection() -> None:
    async with peer(answers_forever) as (url, connections), http(url) as client:
        answers = await asyncio.gather(*(client.get("/") for _ in range(3)))
        assert [a.status_code for a in answers] == [200, 200, 200]
        await client.get("/")  # then one of them is reused
    assert len(connections) == 3


async def test_an_expired_or_closed_connection_is_not_reused() -> None:
    async def once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(OK.replace(b"200 OK\r\n", b"200 OK\r\nConnection: close\r\n"))
        await writer.drain()

    async with peer(once_then_close) as (url, connections), http(url) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/")).status_code == 200
    assert len(connections) == 2
    async with peer(answers_forever) as (url, connections), http(url, expiry=0.0) as client:
        await client.get("/")
        await client.get("/")
    assert len(connections) == 2


async def test_a_cancelled_request_spends_its_connection() -> None:
    held = asyncio.Event()

    async def hold_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        if not held.is_set():
            held.set()
            await asyncio.sleep(30)  # the client gives up first
        writer.write(OK)
        await writer.drain()
        await answers_forever(reader, writer)

    async with peer(hold_first) as (url, connections), http(url) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("/v1/messages/?wait=30"), 0.2)
        assert (await client.get("/")).json() == {"count": 3}  # not the late first answer
    assert len(connections) == 2


async def test_a_chunked_answer_is_read_whole() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b'5\r\n{"cou\r\n6\r\nnt":3}\r\n0\r\n\r\n')
        await writer.drain()

    async with peer(chunked) as (url, _), http(url) as client:
        assert (await client.get("/")).json() == {"count": 3}


async def test_an_answer_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "MAX_ANSWER_BYTES", 8)
    async with peer(answers_forever) as (url, _), http(url) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="too large"):
            await client.get("/")


async def test_no_answer_in_time_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(30)

    async with peer(silent) as (url, _), http(url, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/")


async def closes_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)


async def closes_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"co')
    await writer.drain()


async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()


@pytest.mark.parametrize(
    ("script", "error", "words"),
    [
        (closes_at_once, E.ServerUnreachableError, "broke before the answer came"),
        (closes_mid_body, E.ServerUnreachableError, "broke before the answer came"),
        (not_http, E.RemoteProtocolError, "did not answer in HTTP"),
    ],
)
async def test_broken_answers_are_named_as_before(
    script: Script, error: type[E.ProvisionError], words: str
) -> None:
    async with peer(script) as (url, _), ApiClient(url) as api:
        with pytest.raises(error) as info:
            await api.request_registration_code("+15550001111")
    assert type(info.value) is error
    assert words in info.value.message


async def test_a_refused_connection_is_named_as_one() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens there now
    async with ApiClient(f"http://127.0.0.1:{port}") as api:
        with pytest.raises(E.ServerUnreachableError, match="connection refused"):
            await api.request_registration_code("+15550001111")


async def test_a_cancellation_at_any_step_ends_the_request() -> None:
    """Cancelled at each of its steps in turn (connect, write, read), a request ends at once
    with the cancellation: none may swallow it and go on (Python 3.11's ``asyncio.wait_for``
    does when what it waits for finishes in the same loop turn, which left Ctrl-C waiting
    30 s in the acknowledgement's long poll)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(30)

    async with peer(silent) as (url, _), http(url) as client:
        for turns in range(40):
            task = asyncio.ensure_future(client.get("/v1/messages/?wait=30"))
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            done, _pending = await asyncio.wait([task], timeout=2)
            assert done, f"still running 2 s after a cancellation at turn {turns}"
            assert task.cancelled(), f"turn {turns}: {task}"
