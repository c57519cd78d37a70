"""Server URLs: one canonical form, and the trusted-list check (§3, §8).

Both the QR's ``channel_server`` and the DeviceInit's ``server`` are compared
against the device's trusted list in canonical form ``scheme://host[:port]``
(lowercase, default port dropped), so ``HTTPS://Relay.Example.org:443/`` and
``https://relay.example.org`` are the same server and nothing else is.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from textsecure_provision.errors import InvalidInputError, UntrustedServerError

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_server_url(url: str) -> str:
    """Return ``scheme://host[:port]``; raise ``InvalidInputError`` for anything else."""
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        raise InvalidInputError("the server URL is empty or contains spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInputError("the server URL is not valid (bad port or host)") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidInputError("the server URL must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise InvalidInputError("the server URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInputError("the server URL must not contain credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInputError("the server URL must be scheme://host[:port], with no path")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def check_trusted(url: str, trusted: Iterable[str]) -> str:
    """Return the canonical ``url`` if it is on the ``trusted`` list, else raise.

    An unparsable URL is untrusted too: the peer chose it, not the user.
    """
    try:
        canonical = normalize_server_url(url)
    except InvalidInputError as exc:
        raise UntrustedServerError(
            "the server named by the other device is not a valid URL"
        ) from exc
    allowed = set()
    for entry in trusted:
        try:
            allowed.add(normalize_server_url(entry))
        except InvalidInputError:
            continue  # a bad entry in the list trusts nothing
    if canonical not in allowed:
        raise UntrustedServerError(f"the server {canonical} is not on this device's trusted list")
    return canonical
