"""Issue 12 #5: one sender cannot fill a device's queue without bound, and a fetch page is
bounded in bytes. Before: 75 MB queued for one device in 40 s, each fetch a 25 MB page.

Real server on loopback; the attacker is an ordinary account sending to the victim's
device 1 as fast as it may. A normal link runs meanwhile and must still succeed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
from pathlib import Path

import httpx

from textsecure_provision.server.config import MAX_FETCH_BYTES, MAX_QUEUE_BYTES

from . import normal_link
from .support import TEST_CODE, new_number, new_password, start_live_server

BODY = 190 * 1024  # base64 of it stays under the 256 KiB body limit


async def register(http: httpx.AsyncClient) -> tuple[str, str]:
    number, password = new_number(), new_password()
    r = await http.put(
        f"/v1/accounts/code/{TEST_CODE}",
        json={"registrationId": 9, "fetchesMessages": True},
        auth=(number, password),
    )
    assert r.status_code == 200, r.text
    return number, password


def queued(db: Path, number: str) -> int:
    """The device's queue, read through SQLite itself (a second reader is fine in WAL)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT COUNT(*) FROM messages WHERE number = ?", (number,)).fetchone()[0])
    finally:
        con.close()


def one_message(size: int) -> dict[str, object]:
    body = base64.b64encode(os.urandom(size)).decode()
    return {"messages": [{"type": 1, "destinationDeviceId": 1, "body": body}]}


def test_a_full_queue_refuses_the_sender_and_stores_nothing(tmp_path: Path) -> None:
    db = tmp_path / "relay.sqlite3"
    server = start_live_server(db_url=f"sqlite:///{db}")

    async def fill() -> tuple[list[int], httpx.Response, int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            victim, attacker = await register(http), await register(http)
            statuses = []
            while True:
                r = await http.put(f"/v1/messages/{victim[0]}", json=one_message(BODY), auth=attacker)
                statuses.append(r.status_code)
                if r.status_code != 200 or len(statuses) > 200:
                    break
            stored = queued(db, victim[0])
            again = await http.put(f"/v1/messages/{victim[0]}", json=one_message(BODY), auth=attacker)
            assert queued(db, victim[0]) == stored  # nothing stored
            # The victim fetches: a page holds at most MAX_FETCH_BYTES (after its first).
            page = (await http.get("/v1/messages/", auth=victim)).json()
            sizes = [len(base64.b64decode(m["body"])) for m in page["messages"]]
            assert page["more"] is True
            assert sum(sizes) <= MAX_FETCH_BYTES and len(sizes) == MAX_FETCH_BYTES // BODY
            # Acknowledging makes room again.
            for m in page["messages"]:
                assert (await http.delete(f"/v1/messages/{m['guid']}", auth=victim)).status_code == 200
            r = await http.put(f"/v1/messages/{victim[0]}", json=one_message(BODY), auth=attacker)
            assert r.status_code == 200, r.text
            return statuses, again, stored

    async def scenario() -> tuple[list[int], httpx.Response, int]:
        master = await normal_link.register_master(server.url)
        filled, seconds = await asyncio.gather(fill(), normal_link.link(server.url, master))
        print(f"\nwhile one sender filled a queue: a normal link took {seconds:.2f} s")
        assert seconds < normal_link.LINK_TIMEOUT_S
        return filled

    try:
        statuses, again, stored = asyncio.run(scenario())
    finally:
        server.stop()
    accepted = MAX_QUEUE_BYTES // BODY
    print(f"queued for the victim: {stored} messages, {stored * BODY / 2**20:.1f} MiB of bodies")
    assert statuses == [200] * accepted + [429], statuses
    assert stored == accepted  # 10 MiB of bodies at most, not 75 MB
    assert again.status_code == 429
    assert again.headers["retry-after"] == "60"
    assert again.json()["error"] == (
        "the queue of device 1 is full (1000 messages or 10240 KiB waiting until "
        "acknowledged); try again later"
    )


def test_the_message_count_is_bounded_too(tmp_path: Path) -> None:
    server = start_live_server(db_url=f"sqlite:///{tmp_path / 'relay.sqlite3'}", max_queue_messages=20)

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            victim, attacker = await register(http), await register(http)
            return [
                (await http.put(f"/v1/messages/{victim[0]}", json=one_message(100), auth=attacker)).status_code
                for _ in range(23)
            ]

    try:
        assert asyncio.run(scenario()) == [200] * 20 + [429] * 3
        assert server.services.metrics.rate_limit_refusals["device_queue"] == 3
    finally:
        server.stop()
