"""Hardening tests (issue 8): fuzzing, faults, brute force, load, TLS, secrets.

Markers (registered here, so pyproject.toml needs no change):

* ``fuzz``: property and schema fuzzing. In the normal run each property has a
  small budget (the whole folder stays well under a minute); the long run is

      FUZZ_EXAMPLES=2000 python -m pytest tests/hardening -m fuzz
      python -m pytest tests/hardening -m fuzz --hypothesis-profile=long    # same, 2000

* ``load``: the bounded load run (50 concurrent links for a few seconds, in the
  normal run); the full one is ``python benchmarks/load_links.py`` (500 × 60 s).

The e2e helpers (a real ``provision server`` process, the CLI in subprocesses) are
reused from tests/e2e/e2e_helpers.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from .support import LONG_PROFILE, LiveServer, start_live_server

_TESTS = Path(__file__).resolve().parent.parent
for extra in (_TESTS / "e2e", _TESTS.parent / "benchmarks"):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))

settings.register_profile(
    LONG_PROFILE,
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: hypothesis / schemathesis fuzzing (bounded)")
    config.addinivalue_line("markers", "load: concurrent links against one server (bounded)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A long fuzz run outlasts the suite's 120 s per-test timeout: lift it for fuzz tests."""
    from .support import fuzz_examples

    if fuzz_examples(0) == 0:  # the normal budget
        return
    here = Path(__file__).parent
    for item in items:
        if item.get_closest_marker("fuzz") and here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.timeout(0))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per module for fuzzing: no rate limits (fuzzing sends many requests from
    one address), long-polls capped at 0.2 s (a fuzzed ?wait= must not park the test)."""
    from textsecure_provision.server.config import RateLimits

    running = start_live_server(
        db_url=f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'relay.sqlite3'}", rate_limits=RateLimits.off(), max_wait_s=0.2
    )
    yield running
    running.stop()

