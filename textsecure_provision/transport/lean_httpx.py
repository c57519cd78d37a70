"""httpx, imported without its command-line client and without httpcore's trio support.

``import httpx`` also imports ``httpx._main`` (the ``httpx`` command: click, rich,
pygments) whenever those happen to be installed, as they are wherever rich is: about half
of httpx's import time, ~30 ms of every CLI run that never uses it (B2,
docs/performance.md). A stand-in module, set before httpx's first import, keeps it out;
``httpx.main`` then says how to get the real one.

httpcore, which httpx imports only when the first client is made, imports ``trio``
whenever it is installed (``httpcore._synchronization``, ``httpcore.TrioBackend``), even
in a process that runs asyncio: trio and its ``attrs`` cost ~90 ms of CPU here (httpcore
alone 180 → 90 ms), in every CLI process, on the link's timed path (the master makes its
first client after the consent, B2). Our clients run only on asyncio,
where httpcore never touches trio, so httpcore is imported here, eagerly, while
``import trio`` is made to fail (httpcore's own "not installed" path); ``trio`` stays
importable for anything else in the process afterwards.

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

if "httpcore" not in sys.modules and "trio" not in sys.modules:
    sys.modules["trio"] = None  # type: ignore[assignment]  # `import trio` raises ImportError
    try:
        import httpcore  # noqa: F401 - imported for its side effect: no trio inside
    finally:
        if sys.modules.get("trio", ...) is None:
            del sys.modules["trio"]

import httpx  # noqa: E402 - after the stand-in, on purpose

__all__ = ["httpx"]
