"""B5: DeviceInit seal + open vs the bare primitive floor (target ≤ 1.3×).

The floor makes the same calls to `cryptography` that one link needs (X25519
key generation and two exchanges, HKDF, AES-256-CBC with PKCS7, HMAC-SHA256)
and nothing else: no protobuf, no checks, no confirmation code. Both are timed
interleaved in one process so that machine noise hits them alike.

Run: python benchmarks/bench_envelope.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import statistics
import time
from hashlib import sha256

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.protocol.messages import IdentityKeyPayload
from textsecure_provision.protocol.provisioning import open_device_init, seal_device_init

TARGET = 1.3
IDENTITY = KeyPair.generate()
PAYLOAD = IdentityKeyPayload(
    IDENTITY, "+15550001111", "https://relay.example.org", False, 123456789
)
SECONDARY = KeyPair.generate()


def project_once() -> None:
    sealed = seal_device_init(PAYLOAD, SECONDARY.public)
    open_device_init(sealed.device_init, SECONDARY)


_SEC_PRIV = X25519PrivateKey.from_private_bytes(SECONDARY.private.raw)
_SEC_PUB = _SEC_PRIV.public_key()
_PLAINTEXT = os.urandom(150)  # the size of a serialized IdentityKey


def floor_once() -> None:
    # master: ephemeral, ECDH, HKDF, pad, encrypt, MAC
    eph = X25519PrivateKey.generate()
    eph_pub = b"\x05" + eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    secret = eph.exchange(_SEC_PUB)
    okm = HKDF(hashes.SHA256(), 64, eph_pub, b"WhisperDeviceInit").derive(secret)
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(_PLAINTEXT) + padder.finalize()
    enc = Cipher(algorithms.AES(okm[:32]), modes.CBC(iv)).encryptor()
    body = b"\x33" + iv + enc.update(padded) + enc.finalize()
    mac = hmac.new(okm[32:], body, sha256).digest()
    # secondary: ECDH, HKDF, MAC, decrypt, unpad
    secret2 = _SEC_PRIV.exchange(eph.public_key())
    okm2 = HKDF(hashes.SHA256(), 64, eph_pub, b"WhisperDeviceInit").derive(secret2)
    hmac.compare_digest(hmac.new(okm2[32:], body, sha256).digest(), mac)
    dec = Cipher(algorithms.AES(okm2[:32]), modes.CBC(body[1:17])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    unpadder.update(dec.update(body[17:]) + dec.finalize()) + unpadder.finalize()


def per_call_us(fn: object, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def main() -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    ns = parser.parse_args()
    for fn in (project_once, floor_once):
        per_call_us(fn, 50)  # warm up
    ratios, ours, floors = [], [], []
    for _ in range(ns.rounds):
        f = per_call_us(floor_once, ns.batch)
        p = per_call_us(project_once, ns.batch)
        ours.append(p)
        floors.append(f)
        ratios.append(p / f)
    ratio = statistics.median(ratios)
    print(
        f"B5 DeviceInit seal+open: {statistics.median(ours):.1f} µs; "
        f"primitive floor: {statistics.median(floors):.1f} µs"
    )
    print(
        f"B5 ratio (median of {ns.rounds}): {ratio:.2f}x  target ≤ {TARGET}x  "
        f"{'MET' if ratio <= TARGET else 'MISSED'}"
    )
    if ns.json:
        print(json.dumps({
            "ratio": round(ratio, 3), "target": TARGET, "ok": ratio <= TARGET,
            "ours_us": round(statistics.median(ours), 1),
            "floor_us": round(statistics.median(floors), 1),
        }))  # fmt: skip
    return ratio


if __name__ == "__main__":
    main()
