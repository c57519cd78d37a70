"""Backend URLs as the server shows them: in logs, errors and ``/health``, without passwords.

Its own module so that a Redis-only deployment (fan-out, limits) does not import the Postgres
backend, and asyncpg with it, to print a URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL without its password and query (which may hold credentials too)."""
    parts = urlsplit(url)
    if parts.password is None:
        return urlunsplit(parts._replace(query=""))
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}", query=""))
