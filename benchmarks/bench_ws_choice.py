"""Which websockets sans-I/O class drives the channel socket: CPU and memory of each.

For one channel, from the parsed upgrade request to the client's close answered:

* ``Protocol``: our handshake checks (channel_socket.check_upgrade, on the head httptools
  already parsed to route the request) and 101, then ``Protocol(SERVER, state=OPEN)``
  for the frames;
* ``ServerProtocol``: the library parses the head again with its own HTTP parser,
  ``accept()`` checks it and builds the 101, then the same frames.

Memory: bytes retained per idle channel (after the uuid frame) by the chosen object,
tracemalloc over ``--channels`` of them. CPU: process time per channel, median of runs.
Run: python benchmarks/bench_ws_choice.py [--channels 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import struct
import time
import tracemalloc
from typing import Any

import httptools
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol

from textsecure_provision.server.channel_socket import accept_key, check_upgrade

HEAD = (
    b"GET /v1/temp_websocket HTTP/1.1\r\nHost: relay:8080\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n"
    b"Sec-WebSocket-Version: 13\r\nUser-Agent: bench\r\n\r\n"
)
UUID = b'{"uuid":"0d4f7a52-6f0c-4e9d-9a51-7c1f5e2b3a44"}'
MESSAGE = b'{"message":"' + b"A" * 300 + b'"}'
QUIET = logging.getLogger("bench.ws")
QUIET.setLevel(logging.WARNING)
QUIET.propagate = False


def client_close() -> bytes:
    key = os.urandom(4)
    payload = struct.pack("!H", 1000)
    return b"\x88\x82" + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


CLOSE = client_close()


class Head:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))


def parsed_head() -> tuple[str, list[tuple[bytes, bytes]]]:
    sink = Head()
    parser = httptools.HttpRequestParser(sink)
    with contextlib.suppress(httptools.HttpParserUpgrade):
        parser.feed_data(HEAD)
    return parser.get_http_version(), sink.headers


def open_with_protocol() -> Any:
    version, headers = parsed_head()
    assert check_upgrade(version, headers) is None
    key = next(v for n, v in headers if n == b"sec-websocket-key")
    response = b"HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: " + accept_key(key)
    ws = Protocol(Side.SERVER, state=State.OPEN, max_size=4096, logger=QUIET)
    ws.send_text(UUID)
    out = [response, *ws.data_to_send()]
    return ws, out


def open_with_server_protocol() -> Any:
    parsed_head()  # routing needs the path anyway: the front parses the head in both cases
    ws = ServerProtocol(max_size=4096, logger=QUIET)
    ws.receive_data(HEAD)
    (request,) = ws.events_received()
    response = ws.accept(request)
    ws.send_response(response)
    ws.send_text(UUID)
    out = ws.data_to_send()
    return ws, out


def finish(ws: Any) -> None:
    ws.send_text(MESSAGE)
    ws.send_close(1000)
    ws.data_to_send()
    ws.receive_data(CLOSE)
    ws.events_received()
    ws.data_to_send()


def cpu_us(opener: Any, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        ws, _ = opener()
        finish(ws)
    return (time.process_time() - start) / n * 1e6


def retained_bytes(opener: Any, n: int) -> float:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    keep = [opener()[0] for _ in range(n)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(keep) == n
    return total / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for name, opener in (("Protocol", open_with_protocol),
                         ("ServerProtocol", open_with_server_protocol)):  # fmt: skip
        cpu = statistics.median(cpu_us(opener, args.channels) for _ in range(args.runs))
        mem = retained_bytes(opener, args.channels)
        print(f"{name:15s} {cpu:7.1f} µs per channel   {mem / 1024:5.2f} KiB per idle channel")


if __name__ == "__main__":
    main()
