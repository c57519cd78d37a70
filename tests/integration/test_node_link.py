"""The node link (fanout/node_link.py): a minimal RESP2 client for channel deliveries, against
a real redis-server of our own (services.PrivateRedis), so that it can be killed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from textsecure_provision.server.fanout.node_link import (
    NodeLink,
    RespError,
    encode_command,
    parse_reply,
)

from .services import PrivateRedis, require_services

pytestmark = [pytest.mark.redis]

WAIT_S = 10.0


def test_resp_values_parse_whole_or_not_at_all() -> None:
    assert (
        encode_command("PUBLISH", "t", "é")
        == b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nt\r\n$2\r\n\xc3\xa9\r\n"
    )
    data = b"*3\r\n$7\r\nmessage\r\n$1\r\nt\r\n$2\r\nhi\r\n:5\r\n+OK\r\n$-1\r\n"
    value, pos = parse_reply(data, 0)  # type: ignore[misc]
    assert value == ["message", "t", "hi"]
    assert parse_reply(data, pos) == (5, pos + 4)
    assert parse_reply(data, pos + 4) == ("OK", pos + 9)
    assert parse_reply(data, pos + 9) == (None, len(data))
    for cut in range(1, 30):  # every prefix of the array is "not yet", never a wrong value
        assert parse_reply(data[:cut], 0) is None
    err, _ = parse_reply(b"-ERR wrong\r\n", 0)  # type: ignore[misc]
    assert isinstance(err, RespError) and str(err) == "ERR wrong"
    with pytest.raises(ConnectionError, match="not RESP"):
        parse_reply(b"?junk\r\n", 0)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    require_services()
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
async def links(
    private_redis: PrivateRedis,
) -> AsyncIterator[tuple[NodeLink, list[str], list[int]]]:
    got: list[str] = []
    downs: list[int] = []
    link = NodeLink(private_redis.url, "t:a", got.append, lambda: downs.append(1))
    await link.start(WAIT_S)
    try:
        yield link, got, downs
    finally:
        await link.close()


async def _until(condition: object) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.01)
    return False


async def test_publishes_of_one_turn_arrive_in_order_with_their_counts(
    links: tuple[NodeLink, list[str], list[int]],
) -> None:
    link, got, _ = links
    counts = await asyncio.gather(*(link.publish("t:a", f"m{i}") for i in range(200)))
    assert counts == [1] * 200  # one subscriber: the link itself
    assert await link.publish("t:nobody", "x") == 0
    assert await _until(lambda: len(got) == 200)
    assert got == [f"m{i}" for i in range(200)]


async def test_a_killed_redis_takes_the_link_down_and_it_comes_back(
    links: tuple[NodeLink, list[str], list[int]], private_redis: PrivateRedis
) -> None:
    link, got, downs = links
    private_redis.stop()
    assert await _until(lambda: not link.up)
    assert downs == [1]
    with pytest.raises(ConnectionError):
        await link.publish("t:a", "lost")
    private_redis.start()
    assert await _until(lambda: link.up)  # resubscribed by itself
    assert await link.publish("t:a", "back") == 1
    assert await _until(lambda: got == ["back"])


async def test_a_link_that_cannot_connect_refuses_to_start(tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)  # never started: nothing listens on its port
    link = NodeLink(redis.url, "t:a", lambda _: None, lambda: None)
    with pytest.raises(ConnectionError):
        await link.start(0.5)
    assert not link.up


async def test_a_delivery_is_true_once_any_receiver_delivered_else_false_after_all() -> None:
    """Two nodes that clashed on a tag both answer a delivery request (fanout/redis.py):
    True as soon as one delivered; False only once every receiver PUBLISH counted said no,
    whether the answers come before or after that count."""
    from textsecure_provision.server.fanout.redis import _Delivery

    early_no = _Delivery()
    early_no.answer(False)
    early_no.expect(2)
    assert not early_no.done.done()  # one of two answered no: the other may deliver
    early_no.answer(True)
    assert early_no.done.result() is True
    all_no = _Delivery()
    all_no.expect(2)
    all_no.answer(False)
    assert not all_no.done.done()
    all_no.answer(False)
    assert all_no.done.result() is False
    before_count = _Delivery()
    before_count.answer(False)
    before_count.expect(1)  # the answer raced the PUBLISH reply
    assert before_count.done.result() is False
    nobody = _Delivery()
    nobody.expect(0)
    assert nobody.done.result() is False
