"""Rate limits (§4: 429 with Retry-After) and guess lockouts, one room per backend.

* ``base.py``: the ``RateLimiter`` interface (token buckets keyed by rule and key:
  ``acquire`` takes a token or says how long to wait; a refusal takes nothing)
  and ``Limits``, the server's rules applied through one limiter.
* ``memory.py``: buckets in this process (one node).
* ``persistent.py``: the memory buckets of the guess rules written through to
  the database, so a restart does not hand a guesser fresh budgets.
* ``redis.py``: buckets in Redis, shared by every node (``--redis``).
* ``backoff.py``: the registration code's lockout per number, doubling with each
  wrong guess, kept in the database.
"""

from textsecure_provision.server.limits.base import Limits, RateLimiter
from textsecure_provision.server.limits.memory import LOW_WATER, MAX_BUCKETS, MemoryRateLimiter

__all__ = ["LOW_WATER", "MAX_BUCKETS", "Limits", "MemoryRateLimiter", "RateLimiter"]
