"""TLS settings shared by the HTTP API and the channel websocket."""

from __future__ import annotations

import ssl

from textsecure_provision.errors import ServerUnreachableError


def make_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trust store, or only ``ca_file`` (PEM) when given (``--ca-file``)."""
    try:
        return (
            ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        )
    except (OSError, ssl.SSLError) as exc:
        raise ServerUnreachableError(
            f"cannot load the CA file {ca_file}: {getattr(exc, 'strerror', None) or exc}",
            hint="Pass --ca-file a readable PEM file holding the server's CA certificate.",
        ) from exc


def plain_http_context() -> ssl.SSLContext:
    """What an ``http://`` client is given instead of httpx's default (``verify=True``), which
    loads certifi's whole CA bundle when the client is made: ~30 ms of every CLI run that
    never makes a TLS connection. This context trusts no CA at all (certificates and host
    names are still required), so a TLS connection through it, should one ever be made,
    fails closed."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
