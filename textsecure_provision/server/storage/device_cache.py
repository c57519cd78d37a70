"""Device records by (number, device id): the read behind every authenticated request,
kept in memory so that a rendezvous's PUT costs no database round trip.

The store that owns a cache drops a number's entries after every write that
changes its devices (and PostgreSQL also on a NOTIFY from any node: see
postgres.py). Only hits are cached; ``generation`` moves on every drop, so a read
that started before a change is not cached when it ends, and a record read just
before a change cannot outlive it. Memory is bounded (the cache starts over past
``CACHE_MAX_ENTRIES``) and every entry is re-read after ``CACHE_MAX_AGE_S``.
"""

from __future__ import annotations

import time

from textsecure_provision.server.storage.base import StoredDevice

CACHE_MAX_ENTRIES = 100_000
CACHE_MAX_AGE_S = 30.0  # belt and braces: even with no invalidation, re-read this often


class DeviceCache:
    """Valid only while ``live`` (PostgreSQL: while its listener is up; SQLite: open)."""

    def __init__(self) -> None:
        self.live = False
        self.generation = 0
        self._entries: dict[str, dict[int, tuple[StoredDevice, float]]] = {}
        self._size = 0

    def get(self, number: str, device_id: int) -> StoredDevice | None:
        entry = self._entries.get(number, {}).get(device_id)
        if entry is None or time.monotonic() - entry[1] > CACHE_MAX_AGE_S:
            return None
        return entry[0]

    def put(self, record: StoredDevice, generation: int) -> None:
        if not self.live or generation != self.generation:
            return
        if self._size >= CACHE_MAX_ENTRIES:
            self._entries.clear()
            self._size = 0
        devices = self._entries.setdefault(record.number, {})
        self._size += record.device_id not in devices
        devices[record.device_id] = (record, time.monotonic())

    def drop(self, number: str) -> None:
        self.generation += 1
        self._size -= len(self._entries.pop(number, ()))

    def reset(self, live: bool) -> None:
        self.generation += 1
        self.live = live
        self._entries.clear()
        self._size = 0

    def __len__(self) -> int:
        return self._size
