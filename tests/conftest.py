"""Shared test helpers: the vector files copied from the contract (users have no ../shared)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(__file__).parent / "vectors"


def load_vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


@pytest.fixture(scope="session")
def device_init_vector() -> dict[str, Any]:
    return load_vector("device_init.json")


@pytest.fixture(scope="session")
def session_vector() -> dict[str, Any]:
    return load_vector("session_v3.json")
