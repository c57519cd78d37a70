"""The real ``provision`` CLI with one pause point armed, for the kill -9 tests.

``FAULT_PAUSE_AT`` names where the process stops and waits to be killed, after writing
``FAULT_MARKER`` so the test knows it got there (no timing guesses):

* ``after_register``: the server has answered ``PUT /v1/devices/{code}`` (the device
  exists on the server) and the keys upload is about to start;
* ``before_rename``: the keys are uploaded and ``device.json`` is written to its temporary
  file and fsynced, but not yet renamed into place (the middle of the atomic write).

Nothing else changes: every other line that runs is the shipped code.
Run as ``python tests/hardening/fault_cli.py <provision arguments>``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


def _pause() -> None:
    Path(os.environ["FAULT_MARKER"]).write_text(f"{os.getpid()}\n")
    while True:  # blocks the whole process, event loop included, until SIGKILL
        time.sleep(3600)


def _arm(point: str) -> None:
    if point == "after_register":
        from textsecure_provision.transport import api

        async def upload_keys(self: Any, body: Any) -> None:
            _pause()

        api.ApiClient.upload_keys = upload_keys  # type: ignore[method-assign]
    elif point == "before_rename":
        real_replace = os.replace

        def replace(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
            if str(dst).endswith("device.json"):
                _pause()
            real_replace(src, dst, *args, **kw)

        os.replace = replace
    else:
        raise SystemExit(f"unknown FAULT_PAUSE_AT {point!r}")


if __name__ == "__main__":
    if os.environ.get("FAULT_PAUSE_AT"):
        _arm(os.environ["FAULT_PAUSE_AT"])
    from textsecure_provision.cli.main import main

    sys.argv[0] = "provision"
    main()
