"""httpx, imported without its command-line client.

``import httpx`` also imports ``httpx._main`` (the ``httpx`` command: click, rich,
pygments) whenever those happen to be installed, as they are wherever rich is: about half
of httpx's import time, ~30 ms of every CLI run that never uses it (B2,
docs/performance.md). A stand-in module, set before httpx's first import, keeps it out;
``httpx.main`` then says how to get the real one. Import httpx from here.
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
