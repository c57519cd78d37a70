"""Client addresses in the canonical form every per-address budget is keyed by.

One client must not get many budgets by writing its address several ways, or
by using the many addresses it holds: an IPv6 client is keyed by its /64 (a
home or a cloud VM usually gets a whole /64), an IPv4-mapped IPv6 address
(``::ffff:192.0.2.1``, a dual-stack socket) counts as the IPv4 address, and a
zone (``fe80::1%eth0``) is dropped. Anything that is not an IP address (a Unix
socket, a test client) is kept as it is.
"""

from __future__ import annotations

import functools
import ipaddress

IPV6_PREFIX = 64


@functools.lru_cache(maxsize=4096)
def canonical_address(host: str) -> str:
    """``2001:db8::1`` → ``2001:db8::/64``; ``::ffff:10.0.0.1`` → ``10.0.0.1``."""
    bare = host.strip().strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)
