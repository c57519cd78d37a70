"""What a piece of code imports, seen from a fresh interpreter: for the tests that keep
start-up paths light (``--help``, the QR command, the server command, the ack wait) and
backends apart (a Redis-only server loads no PostgreSQL driver)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable


def modules_loaded(code: str, watched: Iterable[str]) -> list[str]:
    """Run ``code`` in a fresh interpreter; the loaded modules that are one of ``watched`` or
    inside one (``"httpx"`` counts ``httpx._client``), sorted. Whatever ``code`` prints
    is ignored."""
    probe = (
        f"{code}\n"
        "import sys as _sys\n"
        f"_watched = {sorted(set(watched))!r}\n"
        "_loaded = sorted(m for m in _sys.modules"
        " if any(m == w or m.startswith(w + '.') for w in _watched))\n"
        "import json as _json\n"  # after the census: the probe's own import is not counted
        "print(_json.dumps(_loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded
