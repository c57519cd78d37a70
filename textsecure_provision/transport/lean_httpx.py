"""httpx, imported without its command-line client; httpcore (and trio) not at all.

``import httpx`` also imports ``httpx._main`` (the ``httpx`` command: click, rich,
pygments) whenever those happen to be installed, as they are wherever rich is: about half
of httpx's import time, ~30 ms of every CLI run that never uses it (B2,
docs/performance.md). A stand-in module, set before httpx's first import, keeps it out;
``httpx.main`` then says how to get the real one.

httpcore, httpx's own transport, is not used (``transport/streams.py`` replaces it);
httpx imports it only for a proxy set in the environment. It would import ``trio`` whenever
that is installed, even in a process that runs asyncio (~90 ms of CPU here), so it is
never imported on its own here.

Import httpx from here.
"""

from __future__ import annotations

import sys
import types


def _cli_unavailable() -> None:
    raise SystemExit("the httpx command line is not loaded in this process; run `httpx`")


if "httpx" not in sys.modules:
    _stand_in = types.ModuleType("httpx._main")
    _stand_in.main = _cli_unavailable  # type: ignore[attr-defined]
    sys.modules.setdefault("httpx._main", _stand_in)

import httpx  # noqa: E402 - after the stand-in, on purpose

__all__ = ["httpx"]
