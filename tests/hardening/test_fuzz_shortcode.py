"""Fuzzing the short-code parsers: the relay's nameplate routes over loopback, and the
client's parsers of the relay's answers (a hostile relay).

Server property: never a 5xx, every refusal the §4 JSON error. Client property:
whatever the relay answers, only a ``ProvisionError`` comes out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from textsecure_provision.errors import ProvisionError
from textsecure_provision.protocol import bodies
from textsecure_provision.protocol.shortcode import decode_link_payload
from textsecure_provision.server.routes.nameplates import parse_nameplate

from .support import LiveServer, fuzz
from .test_fuzz_server import check_answer, json_values

pytestmark = pytest.mark.fuzz


@pytest.fixture(scope="module")
def http(fuzz_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_server.url, timeout=10.0) as c:
        yield c


@pytest.fixture(scope="module")
def live_nameplate(fuzz_server: LiveServer, http: httpx.Client) -> Iterator[tuple[int, str]]:
    """An open channel and its nameplate, so the deep paths have a real mailbox to reach."""
    from websockets.sync.client import connect

    with connect(fuzz_server.url.replace("http://", "ws://") + "/v1/temp_websocket") as ws:
        channel = json.loads(ws.recv(timeout=10))["uuid"]
        r = http.post("/v1/nameplates", json={"channel": channel})
        assert r.status_code == 200, r.text
        yield r.json()["nameplate"], r.json()["token"]


tokens = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
)
message_lists = st.one_of(
    st.lists(st.binary(max_size=5000).map(lambda b: base64.b64encode(b).decode()), max_size=6),
    json_values,
)


@fuzz(60)
@given(
    body=st.one_of(
        st.fixed_dictionaries(
            {}, optional={"channel": st.one_of(st.uuids().map(str), json_values)}
        ).map(json.dumps),
        st.binary(max_size=60),
    )
)
def test_allocate_bodies(http: httpx.Client, body: Any) -> None:
    r = http.post("/v1/nameplates", content=body, headers={"content-type": "application/json"})
    check_answer(r)
    assert r.status_code != 200  # no random uuid is an open channel


@fuzz(80)
@given(messages=message_lists, use_real_token=st.booleans(), token=tokens)
def test_mailbox_posts(
    http: httpx.Client,
    live_nameplate: tuple[int, str],
    messages: Any,
    use_real_token: bool,
    token: str,
) -> None:
    nameplate, real = live_nameplate
    r = http.put(
        f"/v1/nameplates/{nameplate}/messages",
        content=json.dumps({"messages": messages}),  # NaN and Infinity too: the server must cope
        headers={
            "X-Nameplate-Token": real if use_real_token else token,
            "content-type": "application/json",
        },
    )
    check_answer(r)
    if not use_real_token:
        assert r.status_code in (400, 401, 404, 410, 413)


@fuzz(80)
@given(
    value=st.one_of(st.text(max_size=12), st.integers(-5, 10**7).map(str)),
    after=st.one_of(st.none(), st.text(max_size=5)),
    wait=st.one_of(st.none(), st.sampled_from(["0", "0.1", "-1", "nan", "inf", "1e400", "x"])),
    token=tokens,
)
def test_paths_queries_tokens(
    http: httpx.Client,
    value: str,
    after: str | None,
    wait: str | None,
    token: str,
) -> None:
    params = {k: v for k, v in (("after", after), ("wait", wait)) if v is not None}
    path = quote(value, safe="")
    for method, url in (
        ("GET", f"/v1/nameplates/{path}/messages"),
        ("POST", f"/v1/nameplates/{path}/burn"),
        ("PUT", f"/v1/nameplates/{path}/claim"),
    ):
        check_answer(http.request(method, url, params=params, headers={"X-Nameplate-Token": token}))


@fuzz(200)
@given(st.text(max_size=12))
def test_parse_nameplate(text: str) -> None:
    try:
        value = parse_nameplate(text)
    except ProvisionError:
        return
    assert 1 <= value <= 999_999 and text == text.strip()


@fuzz(200)
@given(st.binary(max_size=80))
def test_decode_link_payload(data: bytes) -> None:
    try:
        link = decode_link_payload(data, "https://relay.example.org")
    except ProvisionError:
        return
    assert len(data) == 49 and link.public_key.serialize() == data[16:]


@fuzz(300)
@given(doc=json_values)
def test_client_decoding_of_hostile_answers(doc: Any) -> None:
    """The relay's answers as the client decodes them (protocol/bodies.py): a value or a
    MessageFormatError, nothing else."""
    kinds = (bodies.Capabilities, bodies.Nameplate, bodies.NameplateClaim, bodies.MailboxMessages)
    for kind in kinds:
        try:
            bodies.convert(doc, kind)
        except ProvisionError:
            pass
