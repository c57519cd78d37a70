"""``RateLimiter`` in Redis: the same token buckets as ``memory.py``, shared by nodes.

Each bucket is a hash ``P rl:<rule>:<key>`` holding ``tokens`` and ``at`` (ms),
updated by one Lua script, so read-refill-take is atomic across every node: a
limit spent on node A holds on node B. The script reads the clock from Redis
(``TIME``), so nodes with skewed clocks still agree, and it sets the hash to
expire when the bucket would be full again: a full bucket and no bucket are the
same, so Redis forgets idle buckets by itself (``sweep`` has nothing to do).

A refusal takes nothing (as in memory), and the answer is the wait until one
token is back. When Redis is down, ``acquire``/``peek`` raise
``ServiceUnavailableError`` (503): a limiter that let everything through while
its store is down would hand guessers a window (fail closed).
"""

from __future__ import annotations

import contextlib
import logging

from redis.exceptions import RedisError

from textsecure_provision.errors import ServiceUnavailableError
from textsecure_provision.server.config import Rule
from textsecure_provision.server.fanout.redis import DEFAULT_PREFIX, redis_client
from textsecure_provision.server.urls import redact_url

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV[1] count, ARGV[2] period in ms, ARGV[3] "1" to take a token.
# Returns the wait in ms as a string (Lua numbers become integers on the way out).
_BUCKET_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local count = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = count
if state[1] then
  local elapsed = math.max(0, now - tonumber(state[2]))
  tokens = math.min(count, tonumber(state[1]) + elapsed * count / period)
end
if tokens < 1 then
  return tostring((1 - tokens) * period / count)
end
if ARGV[3] == '1' then
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((count - tokens) * period / count) + 1)
end
return '0'
"""

# RuntimeError: writing to a transport the loop just closed (Redis killed mid-command).
_ERRORS = (RedisError, OSError, TimeoutError, RuntimeError)


class RedisRateLimiter:
    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._redis = redis_client(url, retries=1)
        self._script = self._redis.register_script(_BUCKET_SCRIPT)

    def describe(self) -> str:
        return f"{redact_url(self.url)} (prefix {self.prefix!r})"

    async def _run(self, name: str, rule: Rule, key: str, take: bool) -> float:
        bucket = f"{self.prefix}rl:{name}:{key}"
        period_ms = rule.period_s * 1000
        try:
            wait_ms = await self._script(
                keys=[bucket], args=[rule.count, repr(period_ms), "1" if take else "0"]
            )
        except _ERRORS as exc:
            log.warning("rate limiter unavailable: %s: %s", type(exc).__name__, exc)
            raise ServiceUnavailableError(
                "the rate limiter (Redis) is unavailable; try again"
            ) from exc
        return float(wait_ms) / 1000

    async def acquire(self, name: str, rule: Rule, key: str) -> float:
        return await self._run(name, rule, key, take=True)

    async def peek(self, name: str, rule: Rule, key: str) -> float:
        return await self._run(name, rule, key, take=False)

    async def sweep(self) -> None:
        return None  # buckets expire in Redis once full again

    async def open(self) -> None:
        return None

    async def check(self) -> None:
        try:
            await self._redis.ping()
        except _ERRORS as exc:
            raise ServiceUnavailableError("the rate limiter (Redis) is unavailable") from exc

    async def close(self) -> None:
        with contextlib.suppress(*_ERRORS):
            await self._redis.aclose()
