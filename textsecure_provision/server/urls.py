"""Backend URLs as the server shows them: in logs, errors and ``/health``, without passwords.

Its own module so that a Redis-only deployment (fan-out, limits) does not import the Postgres
backend, and asyncpg with it, to print a URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """The URL without its password, query and fragment (which may hold credentials too).

    Built by hand rather than with ``urlunsplit``, which drops an empty authority and so
    would show ``unix:///run/redis.sock`` as ``unix:/run/redis.sock``.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    scheme = f"{parts.scheme}:" if parts.scheme else ""
    has_authority = url[len(scheme) :].startswith("//")
    return scheme + (f"//{netloc}" if has_authority else "") + parts.path
