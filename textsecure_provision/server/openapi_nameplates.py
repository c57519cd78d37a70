"""The short-code operations of /openapi.json (routes/nameplates.py), kept apart so that the
main document (openapi.py) only merges them in. Their bodies are declared in
``protocol/bodies.py`` like every other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textsecure_provision.protocol import bodies
from textsecure_provision.server.config import ServerConfig
from textsecure_provision.server.nameplates.base import MAX_MESSAGE_BYTES, MAX_MESSAGES_PER_SIDE

if TYPE_CHECKING:
    from textsecure_provision.server.openapi import Operation


def nameplate_operations(config: ServerConfig) -> dict[tuple[str, str], Operation]:
    from textsecure_provision.server.openapi import Operation, Param, wait_param

    nameplate = Param(
        "nameplate",
        "the number at the start of a short code",
        {"type": "string", "pattern": r"^[1-9][0-9]{0,5}$"},
    )
    token = Param(
        "X-Nameplate-Token",
        "this side's token (from allocating or from claiming)",
        {"type": "string", "pattern": bodies.B64_PATTERN},
        where="header",
    )
    off = "; 404 when the server offers no short codes"
    return {
        ("/v1/capabilities", "GET"): Operation(
            "capabilities",
            "What this server offers beyond §4 (short codes)",
            bodies.Capabilities,
            basic_auth=False,
        ),
        ("/v1/nameplates", "POST"): Operation(
            "allocateNameplate",
            "A nameplate for an open temp channel (the new device)",
            bodies.Nameplate,
            (400, 404, 409, 413, 429, 503),
            body=bodies.NameplateRequest,
            basic_auth=False,
            description="No auth, as the channel itself. The nameplate lives as long as the "
            f"channel (at most {config.channel_ttl_s:g} s){off}.",
        ),
        ("/v1/nameplates/{nameplate}/claim", "PUT"): Operation(
            "claimNameplate",
            "Claim a nameplate: the master's one attempt",
            bodies.NameplateClaim,
            (400, 401, 404, 409, 410, 429, 503),
            params=(nameplate,),
            description="A second claim is 409; a burned nameplate 410. Rate limited per "
            f"address and per account{off}.",
        ),
        ("/v1/nameplates/{nameplate}/messages", "PUT"): Operation(
            "postNameplateMessages",
            "Post to the nameplate's mailbox (this side's list)",
            bodies.Empty,
            (400, 401, 404, 410, 413, 503),
            body=bodies.MailboxPost,
            basic_auth=False,
            params=(nameplate, token),
            description=f"At most {MAX_MESSAGES_PER_SIDE} messages per side, "
            f"{MAX_MESSAGE_BYTES} bytes each. A token of neither side is 404{off}.",
        ),
        ("/v1/nameplates/{nameplate}/messages", "GET"): Operation(
            "readNameplateMessages",
            "The other side's messages from ?after=K on, waiting up to ?wait=S",
            bodies.MailboxMessages,
            (400, 401, 404, 410, 503),
            basic_auth=False,
            params=(
                nameplate,
                token,
                Param(
                    "after",
                    "messages already read",
                    {"type": "integer", "minimum": 0, "maximum": 99},
                    where="query",
                    required=False,
                ),
                wait_param(config),
            ),
        ),
        ("/v1/nameplates/{nameplate}/burn", "POST"): Operation(
            "burnNameplate",
            "Burn the nameplate: a key confirmation failed (either side)",
            bodies.Empty,
            (400, 401, 404, 503),
            basic_auth=False,
            params=(nameplate, token),
        ),
    }
