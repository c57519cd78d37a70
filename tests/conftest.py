"""Shared test helpers: the vector files copied from the contract (users have no ../shared),
and tests/ on sys.path for the one live-server harness (``import server_harness``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

VECTORS = TESTS / "vectors"


def load_vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


@pytest.fixture(scope="session")
def device_init_vector() -> dict[str, Any]:
    return load_vector("device_init.json")


@pytest.fixture(scope="session")
def session_vector() -> dict[str, Any]:
    return load_vector("session_v3.json")
