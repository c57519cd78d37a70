"""Issue 12 #8: one account cannot take all of another's one-time prekeys. Before: any
account took all 100 in 0.1 s. Now ``GET /v1/keys/{number}/{device}`` is limited per
(asking device, target), as Signal-Server's "prekeys" limiter: 6 at once, one more per
10 minutes. Other askers are unaffected, and a normal link still succeeds meanwhile.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from textsecure_provision.server.config import RateLimits

from . import normal_link
from .support import keys_body, register, start_live_server

PREKEYS = 100


def test_an_account_cannot_drain_another_accounts_prekeys(tmp_path: Path) -> None:
    rule = RateLimits().key_fetch_pair
    assert rule is not None and (rule.count, rule.period_s) == (6, 3600)
    server = start_live_server(db_url=f"sqlite:///{tmp_path / 'relay.sqlite3'}")

    def drain() -> tuple[list[int], list[int], int]:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            victim, attacker, friend = register(c), register(c), register(c)
            r = c.put("/v1/keys", json=keys_body(victim.identity, PREKEYS), auth=victim.auth)
            assert r.status_code == 200, r.text
            one = [c.get(f"/v1/keys/{victim.number}/1", auth=attacker.auth) for _ in range(PREKEYS)]
            star = [c.get(f"/v1/keys/{victim.number}/*", auth=attacker.auth) for _ in range(20)]
            refused = one[rule.count]
            assert refused.json()["error"] == "too many requests; try again later"
            assert int(refused.headers["retry-after"]) == rule.period_s / rule.count
            # Someone else still gets a one-time prekey.
            r = c.get(f"/v1/keys/{victim.number}/1", auth=friend.auth)
            assert r.status_code == 200 and "preKey" in r.json()["devices"][0]
            left = c.get("/v1/keys/", auth=victim.auth).json()["count"]
            return [r.status_code for r in one], [r.status_code for r in star], left

    async def scenario() -> tuple[list[int], list[int], int]:
        master = await normal_link.register_master(server.url)
        drained, seconds = await asyncio.gather(
            asyncio.to_thread(drain), normal_link.link(server.url, master)
        )
        print(f"\nwhile one account tried to drain another's prekeys: a link took {seconds:.2f} s")
        assert seconds < normal_link.LINK_TIMEOUT_S
        return drained

    try:
        one, star, left = asyncio.run(scenario())
    finally:
        server.stop()
    assert one == [200] * rule.count + [429] * (PREKEYS - rule.count)
    assert star == [200] * rule.count + [429] * (20 - rule.count)
    # The attacker took 12 (6 by id, 6 by "*"), the friend 1: 87 of 100 are left.
    assert left == PREKEYS - 2 * rule.count - 1
