"""The channel PUT served inside uvicorn's HTTP protocol (fastpath.RelayHttpProtocol), over
raw sockets so that what goes on the wire is seen: one answer per request, in order, with
the same headers, errors and metrics as the ASGI route."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx

from textsecure_provision.server.fastpath import in_process, run_eagerly

from .conftest import RunningServer
from .helpers import Device, register
from .test_channels import channel_body, closed_code, open_channel

WAIT_S = 5.0


def _put(master: Device, channel: str, *, version: str = "1.1", extra: str = "") -> bytes:
    body = json.dumps(channel_body()).encode()
    token = base64.b64encode(f"{master.username}:{master.password}".encode()).decode()
    return (
        f"PUT /v1/messages/{channel} HTTP/{version}\r\nHost: x\r\nAuthorization: Basic {token}"
        f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def _responses(
    reader: asyncio.StreamReader, n: int
) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    while len(out) < n:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].startswith("HTTP/1.1 100 "):
            continue  # the interim answer to Expect: 100-continue
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), WAIT_S)
        out.append((int(lines[0].split()[1]), headers, body))
    return out


async def test_pipelined_puts_are_answered_once_each_in_order(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    master = await register(client)
    ws1, one = await open_channel(server)
    ws2, two = await open_channel(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.server.bound_port)
    try:
        # Three requests in one write: delivered, delivered, and the first again (gone: 404).
        writer.write(_put(master, one) + _put(master, two) + _put(master, one))
        answers = await _responses(reader, 3)
    finally:
        writer.close()
    assert [status for status, _, _ in answers] == [200, 200, 404]
    assert answers[0][2] == b"{}"
    assert json.loads(answers[2][2])["code"] == 404
    ids = [headers["x-request-id"] for _, headers, _ in answers]
    assert len(set(ids)) == 3
    assert all("date" in headers for _, headers, _ in answers)
    for ws in (ws1, ws2):
        assert set(json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))) == {"message"}
        assert await closed_code(ws) == 1000
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/messages/{destination}",status="200"' in metrics


async def test_http_1_0_gets_connection_close_and_bad_credentials_401(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    master = await register(client)
    ws, channel = await open_channel(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.server.bound_port)
    try:
        wrong = Device(master.number, 1, "not-the-password", 1, master.identity)
        writer.write(_put(wrong, channel))
        [(status, _, body)] = await _responses(reader, 1)
        assert status == 401 and json.loads(body)["code"] == 401
        writer.write(_put(master, channel, version="1.0"))
        [(status, headers, _)] = await _responses(reader, 1)
        assert status == 200 and headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # the server closed it
    finally:
        writer.close()
    assert set(json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))) == {"message"}
    assert await closed_code(ws) == 1000


async def test_unusual_puts_take_the_ordinary_path_with_the_same_answer(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    """A query string, chunked body or Expect header is uvicorn's and the ASGI route's."""
    master = await register(client)
    ws, channel = await open_channel(server)
    r = await client.put(f"/v1/messages/{channel}?x=1", json=channel_body(), auth=master.auth)
    assert r.status_code == 200 and "x-request-id" in r.headers
    assert set(json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))) == {"message"}
    assert await closed_code(ws) == 1000
    reader, writer = await asyncio.open_connection("127.0.0.1", server.server.bound_port)
    try:
        writer.write(_put(master, channel, extra="Expect: 100-continue\r\n"))
        answers = await _responses(reader, 1)
    finally:
        writer.close()
    assert answers[0][0] == 404  # delivered once already


async def test_run_eagerly_finishes_at_once_or_hands_the_rest_to_a_task() -> None:
    steps: list[str] = []

    async def quick() -> None:
        steps.append("quick")

    async def waits(fut: asyncio.Future[int]) -> None:
        steps.append(f"got {await fut}")

    tasks: set[asyncio.Task[None]] = set()
    run_eagerly(quick(), tasks)
    assert steps == ["quick"] and not tasks  # no task at all
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    run_eagerly(waits(fut), tasks)
    assert len(tasks) == 1
    fut.set_result(5)
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
    assert steps == ["quick", "got 5"]
    for turns in (0, 1):  # cancelled before the task's first step, and while it waits
        cancelled: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        run_eagerly(waits(cancelled), tasks)
        [task] = tasks
        for _ in range(turns):
            await asyncio.sleep(0)  # let the task start waiting
        task.cancel()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), WAIT_S)
        assert cancelled.cancelled() and steps == ["quick", "got 5"]  # nothing ran on
        assert not tasks


def test_the_default_sqlite_server_runs_its_rendezvous_eagerly(
    server: RunningServer, backend: str
) -> None:
    """SQLite with its default limiter (memory, guess budgets saved to SQLite) is in-process:
    the channel open and the PUT run on the receiving stack, not as a task each."""
    assert in_process(server.app.state.services) is (backend == "sqlite")
