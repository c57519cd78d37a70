"""``NameplateStore`` over Redis, shared by every node (``--redis``).

Names (``P`` is ``--redis-prefix``)::

    P np:<n>          hash: channel, ts / tm (token digests), claimer, burned
    P np:<n>:secondary, P np:<n>:master   lists: each side's mailbox (base64)
    P npc:<uuid>      the nameplate bound to that channel

Every operation is one Lua script, so it is atomic across nodes: two claims on
two nodes get one OK and one CLAIMED. A nameplate is live only while its
channel's key ``P ch:<uuid>`` (fanout/redis.py) exists: a channel that expired,
closed or received its DeviceInit takes its nameplate with it, and the number
is free for the next allocation; a burned one stays (410 to both sides) until its
ttl, whatever its channel does. Keys expire with the channel's ttl.

Token digests are compared inside Redis with ``==``, which is not constant
time; they are SHA-256 digests of 256-bit random tokens, so timing on the
comparison tells a caller nothing it could use.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

from textsecure_provision.server.fanout.redis import _REDIS_ERRORS, redis_client
from textsecure_provision.server.nameplates.base import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGES_PER_SIDE,
    MAX_NAMEPLATES,
    Allocated,
    Outcome,
    Read,
)
from textsecure_provision.server.urls import redact_url

# ARGV[1] = P, ARGV[2] = the channel key prefix (P ch:). Shared head of every script:
# np(n) finds the live nameplate n, dropping it (and its mailbox) if its channel is gone.
_HEAD = """
local P, CHP = ARGV[1], ARGV[2]
local function drop(n)
  local k = P .. 'np:' .. n
  redis.call('DEL', k, k .. ':secondary', k .. ':master')
end
local function live(n)
  local k = P .. 'np:' .. n
  local ch = redis.call('HGET', k, 'channel')
  if not ch then return nil end
  if redis.call('HGET', k, 'burned') then return k end  -- kept until its ttl (memory.py)
  if redis.call('EXISTS', CHP .. ch) == 0 then drop(n) return nil end
  return k
end
local function side_of(k, tok)
  if redis.call('HGET', k, 'ts') == tok then return 'secondary' end
  if redis.call('HGET', k, 'tm') == tok then return 'master' end
  return nil
end
"""

# ARGV: P, CHP, channel, token, ttl_ms, max → n > 0, -1 channel gone, -2 taken, 0 exhausted
_ALLOCATE = (
    _HEAD
    + """
local ch, tok, ttl, max = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('EXISTS', CHP .. ch) == 0 then return -1 end
local bound = redis.call('GET', P .. 'npc:' .. ch)
if bound and live(bound) and redis.call('HGET', P .. 'np:' .. bound, 'channel') == ch then
  return -2
end
for n = 1, max do
  if not live(n) then
    local k = P .. 'np:' .. n
    drop(n)
    redis.call('HSET', k, 'channel', ch, 'ts', tok)
    redis.call('PEXPIRE', k, ttl)
    redis.call('SET', P .. 'npc:' .. ch, n, 'PX', ttl)
    return n
  end
end
return 0
"""
)

# ARGV: P, CHP, n, token, claimer
_CLAIM = (
    _HEAD
    + """
local k = live(ARGV[3])
if not k then return 'gone' end
if redis.call('HGET', k, 'burned') then return 'burned' end
if redis.call('HEXISTS', k, 'tm') == 1 then return 'claimed' end
redis.call('HSET', k, 'tm', ARGV[4], 'claimer', ARGV[5])
return 'ok'
"""
)

# ARGV: P, CHP, n, token, op ('post' | 'read' | 'burn'), max msgs, max bytes, after, msgs...
# → {outcome, side, claimed, msgs...}
_MAILBOX = (
    _HEAD
    + """
local k = live(ARGV[3])
if not k then return {'gone', '', 0} end
local side = side_of(k, ARGV[4])
if not side then return {'unauthorized', '', 0} end
local claimed = redis.call('HEXISTS', k, 'tm')
if redis.call('HGET', k, 'burned') then return {'burned', side, claimed} end
local op = ARGV[5]
if op == 'burn' then
  redis.call('HSET', k, 'burned', '1')
  redis.call('DEL', k .. ':secondary', k .. ':master')
  return {'ok', side, claimed}
end
if op == 'post' then
  local box = k .. ':' .. side
  local count = #ARGV - 8
  if redis.call('LLEN', box) + count > tonumber(ARGV[6]) then return {'full', side, claimed} end
  for i = 9, #ARGV do
    if string.len(ARGV[i]) > tonumber(ARGV[7]) then return {'full', side, claimed} end
  end
  for i = 9, #ARGV do redis.call('RPUSH', box, ARGV[i]) end
  redis.call('PEXPIRE', box, redis.call('PTTL', k))
  return {'ok', side, claimed}
end
local other = (side == 'secondary') and 'master' or 'secondary'
local out = {'ok', side, claimed}
for _, m in ipairs(redis.call('LRANGE', k .. ':' .. other, tonumber(ARGV[8]), -1)) do
  table.insert(out, m)
end
return out
"""
)

_B64_LIMIT = (MAX_MESSAGE_BYTES + 2) // 3 * 4


class RedisNameplateStore:
    def __init__(self, url: str, prefix: str, max_nameplates: int = MAX_NAMEPLATES) -> None:
        self.url = url
        self.prefix = prefix
        self._channel_prefix = f"{prefix}ch:"  # fanout/redis.py's channel keys
        self._max = max_nameplates
        self._redis = redis_client(url, retries=1)
        self._allocate = self._redis.register_script(_ALLOCATE)
        self._claim = self._redis.register_script(_CLAIM)
        self._mailbox = self._redis.register_script(_MAILBOX)

    def describe(self) -> str:
        return f"{redact_url(self.url)} (prefix {self.prefix!r})"

    async def close(self) -> None:
        with contextlib.suppress(*_REDIS_ERRORS):  # closing: nothing left to do about it
            await self._redis.aclose()

    async def _run(self, script: Any, *args: object) -> Any:
        from textsecure_provision.errors import ServiceUnavailableError

        try:
            return await script(args=[self.prefix, self._channel_prefix, *args])
        except _REDIS_ERRORS as exc:
            raise ServiceUnavailableError("the nameplate store (Redis) is unavailable") from exc

    async def allocate(self, channel_id: str, token_digest: bytes, ttl_ms: int) -> Allocated:
        n = int(await self._run(self._allocate, channel_id, token_digest.hex(), ttl_ms, self._max))
        if n > 0:
            return Allocated(Outcome.OK, n)
        return Allocated({-1: Outcome.GONE, -2: Outcome.TAKEN}.get(n, Outcome.EXHAUSTED))

    async def claim(self, nameplate: int, token_digest: bytes, claimer: str) -> Outcome:
        return Outcome(await self._run(self._claim, nameplate, token_digest.hex(), claimer))

    async def _box(
        self,
        nameplate: int,
        token_digest: bytes,
        op: str,
        after: int = 0,
        msgs: tuple[str, ...] = (),
    ) -> Read:
        answer = await self._run(
            self._mailbox, nameplate, token_digest.hex(), op,
            MAX_MESSAGES_PER_SIDE, _B64_LIMIT, after, *msgs,
        )  # fmt: skip
        outcome, side, claimed, *found = answer
        return Read(
            Outcome(outcome),
            side if side in ("secondary", "master") else None,
            tuple(base64.b64decode(m) for m in found),
            bool(int(claimed)),
        )

    async def post(self, nameplate: int, token_digest: bytes, messages: list[bytes]) -> Read:
        encoded = tuple(base64.b64encode(m).decode("ascii") for m in messages)
        return await self._box(nameplate, token_digest, "post", msgs=encoded)

    async def read(self, nameplate: int, token_digest: bytes, after: int) -> Read:
        return await self._box(nameplate, token_digest, "read", after=after)

    async def burn(self, nameplate: int, token_digest: bytes) -> Outcome:
        return (await self._box(nameplate, token_digest, "burn")).outcome
