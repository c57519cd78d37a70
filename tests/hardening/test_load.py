"""Load, bounded: concurrent links through one server (benchmarks/load_links.py).

The normal run keeps it short (50 concurrent links for 4 s, ~11 s in all with the cleanup
wait); the full one is ``python benchmarks/load_links.py`` (500 concurrent links for 60 s),
whose measured figures are in docs/security.md. Both assert the same things: no error
(only intended 429s would be allowed, and with the per-address limits off there are none),
every link completed end to end, and nothing left behind once the TTLs have passed: no open
channel, no message, no code, and only the masters' own devices and keys in the database.
"""

from __future__ import annotations

import sys

import pytest

pytestmark = [
    pytest.mark.load,
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the server's RSS"),
]


def test_concurrent_links_leave_nothing_behind() -> None:
    from load_links import run_load

    report = run_load(links=50, seconds=4, prekeys=20, channel_ttl=2, code_ttl=3, housekeeping=0.5)
    assert report.errors == {}, report.errors
    assert report.refusals == {}, report.refusals  # per-number limits never reached
    assert report.links_completed >= 50, report  # every worker finished at least one link
    assert report.abandoned_channels > 0 and report.abandoned_codes > 0
    # Expired channels are closed and forgotten; the relay holds none.
    assert report.open_channels_after == 0
    assert report.channels_expired >= report.abandoned_channels
    tables = report.tables_after
    masters = report.masters_registered
    # Acknowledged messages are deleted; used codes are consumed; unused ones purged.
    assert tables["messages"] == 0
    assert tables["provisioning_codes"] == 0
    assert tables["registration_codes"] == 0
    # Every linked device was removed again: only the masters (and their keys) remain.
    assert tables["accounts"] == masters
    assert tables["devices"] == masters
    assert tables["signed_prekeys"] == masters
    assert tables["one_time_prekeys"] == masters * report.prekeys_per_device
    # Memory: bounded over the run (the long run reports the slope; 5 s is too short for one).
    assert report.rss_max_kib < report.rss_start_kib + 64 * 1024, report.rss_samples
