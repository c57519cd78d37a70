"""Decoding request bodies: the declared msgspec bodies vs the hand-written validator they
replaced (issue 15 item 1).

Two bodies, each decoded from raw bytes to checked values, as the server does:

* ``PUT /v1/messages/{number}``: one message of a 1 KiB body (``--messages`` more);
* ``PUT /v1/keys`` with 100 one-time prekeys, a signed prekey and a last-resort key.

"before" is a frozen copy of ``server/validation.py``'s getters and the route code that used
them (commit 75c0263): ``json.loads``, then per-field type, range, base64 and key checks.
"after" is ``protocol.bodies.decode``. Both are timed interleaved in one process, so machine
noise hits them alike. The signature check and storage are not part of either.

Run: python benchmarks/bench_bodies.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.protocol import bodies
from textsecure_provision.protocol.prekeys import (
    build_keys_upload,
    generate_prekeys,
    generate_signed_prekey,
)

# -- before: the validator of commit 75c0263, inlined so that it stays measurable ------------

UINT32_MAX = 2**32 - 1
INT31_MAX = 2**31 - 1
INT63_MAX = 2**63 - 1
_STD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class Refused(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise Refused(name)


def _read_json_object(raw: bytes) -> dict[str, Any]:
    doc = json.loads(raw, parse_constant=_reject_constant)
    if not isinstance(doc, dict):
        raise Refused("the body must be a JSON object")
    return doc


def _get_int(doc: dict[str, Any], name: str, *, lo: int = 0, hi: int = INT63_MAX) -> int:
    value = doc.get(name)
    if value is None:
        raise Refused(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(f"{name} must be an integer")
    if not lo <= value <= hi:
        raise Refused(f"{name} must be between {lo} and {hi}")
    return value


def _get_optional_int(doc: dict[str, Any], name: str, *, lo: int = 0, hi: int = INT63_MAX) -> Any:
    return None if doc.get(name) is None else _get_int(doc, name, lo=lo, hi=hi)


def _b64decode(text: object, name: str) -> bytes:
    if not isinstance(text, str):
        raise Refused(f"{name} must be a base64 string")
    if len(text) % 4 or not _STD_B64.fullmatch(text):
        raise Refused(f"{name} is not valid base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused(f"{name} is not valid base64") from exc


def _get_public_key(doc: dict[str, Any], name: str) -> bytes:
    data = _b64decode(doc.get(name), name)
    if len(data) != 33:
        raise Refused(f"{name} must be 33 bytes, got {len(data)}")
    if data[0] != 5:
        raise Refused(f"{name} has type byte 0x{data[0]:02x}, expected 0x05")
    return data


def _get_object(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name)
    if not isinstance(value, dict):
        raise Refused(f"{name} must be a JSON object")
    return value


def _get_list(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc.get(name)
    if not isinstance(value, list):
        raise Refused(f"{name} must be a JSON array")
    return value


def _prekey(doc: object) -> tuple[int, bytes]:
    if not isinstance(doc, dict):
        raise Refused("preKeys[] must be a JSON object")
    return _get_int(doc, "keyId", lo=0, hi=UINT32_MAX), _get_public_key(doc, "publicKey")


def before_keys(raw: bytes) -> object:
    doc = _read_json_object(raw)
    identity = _get_public_key(doc, "identityKey")
    spk = _get_object(doc, "signedPreKey")
    signed = (
        _get_int(spk, "keyId", lo=0, hi=UINT32_MAX),
        _get_public_key(spk, "publicKey"),
        _b64decode(spk.get("signature"), "signature"),
    )
    if len(signed[2]) != 64:
        raise Refused("signedPreKey.signature must be 64 bytes")
    prekeys = [_prekey(p) for p in _get_list(doc, "preKeys")]
    if len({p[0] for p in prekeys}) != len(prekeys):
        raise Refused("preKeys holds the same keyId twice")
    last = None if doc.get("lastResortKey") is None else _prekey(doc["lastResortKey"])
    return identity, signed, prekeys, last


def before_messages(raw: bytes) -> object:
    doc = _read_json_object(raw)
    out = []
    for item in _get_list(doc, "messages"):
        if not isinstance(item, dict):
            raise Refused("each of messages must be a JSON object")
        out.append(
            (
                _get_int(item, "type", lo=0, hi=INT31_MAX),
                _get_int(item, "destinationDeviceId", lo=1, hi=INT31_MAX),
                _get_optional_int(item, "destinationRegistrationId", hi=UINT32_MAX) or 0,
                _b64decode(item.get("body"), "body"),
                _get_optional_int(item, "timestamp"),
            )
        )
    ids = [m[1] for m in out]
    if len(set(ids)) != len(ids):
        raise Refused("the same destinationDeviceId appears twice")
    return out


# -- after: the declarations ---------------------------------------------------------------------


def after_keys(raw: bytes) -> object:
    return bodies.decode(raw, bodies.KeysUpload)


def after_messages(raw: bytes) -> object:
    return bodies.decode(raw, bodies.OutgoingMessages)


# -- the bodies ---------------------------------------------------------------------------------


def keys_body(prekeys: int) -> bytes:
    identity = KeyPair.generate()
    upload = build_keys_upload(
        identity.public,
        generate_signed_prekey(identity, 7),
        generate_prekeys(1, prekeys),
        generate_prekeys(0xFFFFFF, 1)[0],
    )
    return bodies.encode(upload)


def messages_body(count: int, size: int) -> bytes:
    return bodies.encode(
        bodies.OutgoingMessages(
            [
                bodies.OutgoingMessage(
                    type=6,
                    destination_device_id=i + 1,
                    destination_registration_id=1234 + i,
                    body=os.urandom(size),
                    timestamp=1_700_000_000_000,
                )
                for i in range(count)
            ]
        )
    )


def per_call_us(fn: Callable[[bytes], object], raw: bytes, loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        fn(raw)
    return (time.perf_counter() - start) / loops * 1e6


def measure(name: str, raw: bytes, before: Any, after: Any, rounds: int) -> dict[str, Any]:
    # The same values come out of both (the "after" ones typed): checked once, not timed.
    assert before(raw) and after(raw)
    loops = max(1, 20_000 // max(1, len(raw) // 200))
    b, a = [], []
    for _ in range(rounds):
        b.append(per_call_us(before, raw, loops))
        a.append(per_call_us(after, raw, loops))
    before_us, after_us = statistics.median(b), statistics.median(a)
    return {
        "body": name,
        "bytes": len(raw),
        "before_us": round(before_us, 2),
        "after_us": round(after_us, 2),
        "speedup": round(before_us / after_us, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=1, help="messages in the PUT body")
    parser.add_argument("--prekeys", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [
        measure(
            f"PUT /v1/messages ({args.messages} x 1 KiB)",
            messages_body(args.messages, 1024),
            before_messages,
            after_messages,
            args.rounds,
        ),
        measure(
            f"PUT /v1/keys ({args.prekeys} prekeys)",
            keys_body(args.prekeys),
            before_keys,
            after_keys,
            args.rounds,
        ),
    ]
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        print(
            f"{r['body']:<34} {r['bytes']:>6} B  before {r['before_us']:>8.1f} µs  "
            f"after {r['after_us']:>8.1f} µs  ({r['speedup']:.1f}x)"
        )


if __name__ == "__main__":
    main()
