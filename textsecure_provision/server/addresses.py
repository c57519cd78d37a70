"""Client addresses as budgets see them: one canonical key per client, and a count of open
sockets per key.

A budget keyed by the raw peer string is easy to sidestep: ``::ffff:10.0.0.1`` and
``10.0.0.1`` are one client, ``2001:DB8::1`` and ``2001:db8::1`` one address, and anyone
with an IPv6 connection holds a whole /64 (2^64 addresses). So every per-address budget
(the socket cap here, the rate limits of ``limits.py``) should use ``address_key``:

* IPv4 as dotted quad (``010.0.0.1`` is not accepted by ``ipaddress``; it stays raw);
* IPv4-mapped IPv6 (``::ffff:a.b.c.d``) as that IPv4 address;
* any other IPv6 address as its /64 network, ``2001:db8:1:2::/64``;
* anything that is not an IP address (a Unix socket, ``"unknown"``) unchanged.
"""

from __future__ import annotations

import ipaddress

IPV6_PREFIX = 64  # one subscriber's allocation: the unit an IPv6 client can vary at will


def canonical_address(text: str) -> str:
    """``text`` as an IP address in canonical form (IPv4-mapped IPv6 as IPv4), or unchanged
    when it is not one. Brackets and an IPv6 zone (``%eth0``) are dropped."""
    try:
        ip = ipaddress.ip_address(text.strip("[]").partition("%")[0])
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def address_key(text: str) -> str:
    """The budget key of a client address: its canonical IPv4 address, or the /64 of its
    IPv6 address (``2001:db8::1`` → ``2001:db8::/64``)."""
    canonical = canonical_address(text)
    if ":" not in canonical:
        return canonical
    try:
        net = ipaddress.IPv6Network((canonical, IPV6_PREFIX), strict=False)
    except ValueError:
        return canonical
    return str(net)


class SocketCounts:
    """Open sockets per address key, with a cap. ``acquire`` says whether one more may
    open; every successful ``acquire`` is matched by exactly one ``release``."""

    __slots__ = ("cap", "counts")

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        n = self.counts.get(key, 0)
        if self.cap is not None and n >= self.cap:
            return False
        self.counts[key] = n + 1
        return True

    def release(self, key: str) -> None:
        n = self.counts.get(key, 0)
        if n <= 1:
            self.counts.pop(key, None)
        else:
            self.counts[key] = n - 1

    def __getitem__(self, key: str) -> int:
        return self.counts.get(key, 0)
