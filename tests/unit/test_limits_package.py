"""Limits are a package of their own, and no Redis-only module loads the Postgres driver."""

from __future__ import annotations

import subprocess
import sys


def test_redis_backends_do_not_load_asyncpg() -> None:
    code = (
        "import sys\n"
        "import textsecure_provision.server.limits.redis\n"
        "import textsecure_provision.server.fanout.redis\n"
        "print('asyncpg' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_redact_url_needs_no_backend() -> None:
    from textsecure_provision.server.urls import redact_url

    assert redact_url("redis://:pw@r:6379/0") == "redis://:***@r:6379/0"
    assert redact_url("postgresql://u:secret@h/db?schema=x") == "postgresql://u:***@h/db"
