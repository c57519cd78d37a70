"""server/addresses.py: one budget key per client, whatever spelling its address arrives in."""

from __future__ import annotations

import pytest

from textsecure_provision.server.addresses import SocketCounts, address_key, canonical_address


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),  # IPv4-mapped IPv6 is the IPv4 client
        ("::FFFF:0a00:0001", "10.0.0.1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", "unknown"),
        ("010.0.0.1", "010.0.0.1"),  # not an address to ipaddress: left as it came
    ],
)
def test_canonical_address(raw: str, canonical: str) -> None:
    assert canonical_address(raw) == canonical


def test_ipv6_addresses_of_one_slash_64_share_a_key() -> None:
    a = address_key("2001:db8:1:2:aaaa::1")
    b = address_key("2001:DB8:1:2:ffff:ffff:ffff:ffff")
    assert a == b == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != a
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "192.0.2.7"


def test_socket_counts_cap_and_release() -> None:
    counts = SocketCounts(cap=2)
    assert counts.acquire("k") and counts.acquire("k")
    assert not counts.acquire("k")  # the third is refused
    assert counts.acquire("other")
    counts.release("k")
    assert counts["k"] == 1 and counts.acquire("k")
    for _ in range(2):
        counts.release("k")
    assert counts["k"] == 0 and "k" not in counts.counts  # no empty entries kept
    assert SocketCounts(cap=None).acquire("k")
