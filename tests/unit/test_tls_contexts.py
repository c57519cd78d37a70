"""The client's TLS contexts: an http:// client skips loading a CA bundle (it costs ~30 ms
per CLI run) and is given a context that fails closed instead."""

from __future__ import annotations

import ssl

import certifi
import pytest

from textsecure_provision.transport.api import ApiClient
from textsecure_provision.transport.tls import plain_http_context


def test_the_plain_http_context_trusts_nothing_and_still_checks() -> None:
    ctx = plain_http_context()
    assert ctx.get_ca_certs() == []
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname


async def test_an_http_client_never_loads_a_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_bundle() -> str:
        raise AssertionError("loaded certifi's CA bundle for an http:// server")

    monkeypatch.setattr(certifi, "where", no_bundle)
    client = ApiClient("http://127.0.0.1:9")
    await client.aclose()


def test_the_transport_imports_httpx_without_its_command_line() -> None:
    """A fresh interpreter: importing our HTTP client must not load httpx's CLI (rich)."""
    import subprocess
    import sys

    code = (
        "import sys, textsecure_provision.transport.api as a; "
        "print(a.httpx.AsyncClient is not None, 'rich' in sys.modules, "
        "'httpx._main' in sys.modules and hasattr(sys.modules['httpx._main'], 'console'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]
