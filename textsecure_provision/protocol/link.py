"""The provisioning link carried by the QR code (§3).

::

    textsecure-device-init:/?channel_uuid=<U>&channel_server=<S>&publicKey=<K>

Built strictly (lowercase uuid, canonical server, padded standard base64, all
percent-encoded); parsed liberally (base64url, missing padding, unknown
parameters ignored) but never ambiguously: a missing or repeated parameter, a
bad uuid, key or server is a ``LinkError`` naming what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NewType
from urllib.parse import quote, unquote

from textsecure_provision.crypto.keys import PublicKey
from textsecure_provision.errors import InvalidInputError, LinkError
from textsecure_provision.protocol.encoding import b64decode_liberal, b64encode
from textsecure_provision.protocol.trust import normalize_server_url

ChannelId = NewType("ChannelId", str)
"""A channel's uuid in lowercase canonical 8-4-4-4-12 form (§3): the client's and the server's."""

LINK_SCHEME = "textsecure-device-init"
LINK_PREFIX = f"{LINK_SCHEME}:/?"
MAX_LINK_LEN = 2048  # a QR code holds at most ~3 KiB; anything longer is not ours
_PARAMS = ("channel_uuid", "channel_server", "publicKey")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def parse_channel_id(text: str) -> ChannelId:
    """A uuid in canonical 8-4-4-4-12 form, any case; returned lowercase."""
    lowered = text.lower() if isinstance(text, str) else ""
    if not _UUID.fullmatch(lowered):
        raise LinkError("channel_uuid is not a uuid in canonical form")
    return ChannelId(lowered)


@dataclass(frozen=True)
class ProvisioningLink:
    """What the secondary shows and the master scans. Valid by construction."""

    channel_uuid: str
    channel_server: str
    public_key: PublicKey

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_uuid", parse_channel_id(self.channel_uuid))
        try:
            server = normalize_server_url(self.channel_server)
        except InvalidInputError as exc:
            raise LinkError(f"channel_server: {exc.message}") from exc
        object.__setattr__(self, "channel_server", server)
        if not isinstance(self.public_key, PublicKey):
            raise TypeError("public_key must be a PublicKey")


def build_link(link: ProvisioningLink) -> str:
    key = b64encode(link.public_key.serialize())
    return (
        f"{LINK_PREFIX}channel_uuid={link.channel_uuid}"
        f"&channel_server={quote(link.channel_server, safe='')}"
        f"&publicKey={quote(key, safe='')}"
    )


def parse_link(text: str) -> ProvisioningLink:
    """Parse a scanned link; raise ``LinkError`` saying what is wrong."""
    if not isinstance(text, str):
        raise LinkError("the link must be text")
    text = text.strip()
    if len(text) > MAX_LINK_LEN:
        raise LinkError("the link is too long to be a provisioning link")
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() != LINK_SCHEME:
        raise LinkError(f"not a provisioning link: it must start with {LINK_SCHEME}:")
    _, qmark, query = rest.partition("?")
    if not qmark:
        raise LinkError("the provisioning link has no parameters")
    query = query.split("#", 1)[0]
    params = _query_params(query)
    channel_uuid, server, key_text = (params[name] for name in _PARAMS)
    try:
        key_bytes = b64decode_liberal(key_text, name="publicKey")
        public_key = PublicKey.from_bytes(key_bytes, name="publicKey").require_usable(
            name="publicKey"
        )
    except InvalidInputError as exc:
        raise LinkError(f"bad publicKey: {exc.message}") from exc
    return ProvisioningLink(channel_uuid, server, public_key)


def _query_params(query: str) -> dict[str, str]:
    # Not parse_qsl: it turns '+' into a space, which would corrupt a base64 key
    # written without percent-encoding; the contract's encoding is plain %XX.
    found: dict[str, str] = {}
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        name = unquote(name)
        if name not in _PARAMS:
            continue  # unknown parameters are ignored (§3)
        if name in found:
            raise LinkError(f"the parameter {name} appears more than once")
        try:
            found[name] = unquote(value, errors="strict")
        except UnicodeDecodeError as exc:
            raise LinkError(f"the parameter {name} is not valid percent-encoded UTF-8") from exc
    for name in _PARAMS:
        if not found.get(name):
            raise LinkError(f"the parameter {name} is missing")
    return found
