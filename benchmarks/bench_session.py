"""Per-message cost of the TextSecure v3 session layer (§7): µs per encrypt+decrypt pair.

Three cases, each with a DeviceControl-sized plaintext:
- same chain: one side sends in a row (symmetric ratchet only: 2 HMACs, HKDF, AES, MAC each way);
- ping-pong: the direction alternates, so every message also takes a DH ratchet step
  (a new key pair and two X25519 exchanges on receipt);
- first message: initiate from a bundle (signature check, X3DH) + responder's prekey decrypt.

Run: python benchmarks/bench_session.py [--n N]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable

from textsecure_provision.crypto import signing
from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.protocol.session import (
    PreKeyBundle,
    Session,
    decrypt_message,
    decrypt_prekey_message,
    encrypt,
    initiate_session,
)

rng = secrets.token_bytes
PLAINTEXT = b"\x08\x02\x1a\x20" + b"x" * 60  # about a serialized DeviceControl{SENT_MESSAGE}

ALICE, BOB = KeyPair.generate(), KeyPair.generate()
BOB_SPK = KeyPair.generate()
BUNDLE = PreKeyBundle(
    BOB.public, 2, 1, BOB_SPK.public, signing.sign(BOB.private, BOB_SPK.public.serialize())
)


def first_message() -> tuple[Session, Session]:
    a = initiate_session(ALICE, 1, BUNDLE, rng)
    result = decrypt_prekey_message(
        None,
        encrypt(a, PLAINTEXT).body,
        our_identity=BOB,
        our_registration_id=2,
        signed_prekeys={1: BOB_SPK}.get,
        one_time_prekeys={}.get,
        rng=rng,
    )
    return a, result.session


def established() -> tuple[Session, Session]:
    a, b = first_message()
    decrypt_message(a, encrypt(b, b"ack").body, rng=rng)
    return a, b


def time_us(fn: Callable[[], object], n: int, rounds: int = 7) -> float:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        results.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    ns = parser.parse_args()

    a, b = established()

    def same_chain() -> None:
        decrypt_message(b, encrypt(a, PLAINTEXT).body, rng=rng)

    turn = [a, b]

    def ping_pong() -> None:
        sender, receiver = turn
        decrypt_message(receiver, encrypt(sender, PLAINTEXT).body, rng=rng)
        turn.reverse()

    same_chain()
    ping_pong()
    print(f"same chain : {time_us(same_chain, ns.n):8.1f} µs per encrypt+decrypt pair")
    print(f"ping-pong  : {time_us(ping_pong, ns.n):8.1f} µs per encrypt+decrypt pair")
    print(
        f"first msg  : {time_us(first_message, max(ns.n // 10, 1)):8.1f} µs "
        "(initiate + type-5 encrypt + responder decrypt)"
    )


if __name__ == "__main__":
    main()
