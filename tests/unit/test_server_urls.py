"""Backend URLs are shown without passwords, and printing one loads no other backend (15.6)."""

from __future__ import annotations

import pytest
from import_probe import modules_loaded  # tests/, on sys.path (tests/conftest.py)

from textsecure_provision.server.urls import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@r:6379/0", "redis://:***@r:6379/0"),
        ("redis://user:pw@r:6379/0?password=pw2", "redis://user:***@r:6379/0"),
        ("postgresql://relay:hunter2@db:5432/relay?schema=r", "postgresql://relay:***@db:5432/relay"),
        ("redis://r:6379/0", "redis://r:6379/0"),
        ("unix:///run/redis/redis.sock?db=1", "unix:///run/redis/redis.sock"),
        ("redis+unix://:pw@/run/redis.sock", "redis+unix://:***@/run/redis.sock"),
        ("postgresql:///relay?host=/run/postgresql&password=pw", "postgresql:///relay"),
        ("redis://u:p@r/0#frag", "redis://u:***@r/0"),
    ],
)
def test_passwords_are_never_shown(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redis_backends_do_not_load_asyncpg() -> None:
    code = (
        "import textsecure_provision.server.fanout.redis\n"
        "import textsecure_provision.server.limits.redis\n"
        "import textsecure_provision.server.nameplates.redis\n"
    )
    assert modules_loaded(code, ["asyncpg"]) == []
