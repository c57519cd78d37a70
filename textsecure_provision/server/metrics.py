"""Counters for ``/metrics`` in the Prometheus text format (version 0.0.4).

Hand-rolled rather than prometheus_client: a handful of counters, one gauge and
one histogram, updated from a single event loop, so plain ints suffice. Labels
hold route templates (``/v1/devices/{code}``), never concrete paths, so no
code or number ever reaches the metrics.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PREFIX = "provision"


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.sum += seconds


class Metrics:
    """What the server counts. One instance per app."""

    def __init__(self) -> None:
        self.open_channels = 0
        self.channels_opened = 0
        self.channels_expired = 0
        self.channel_messages_delivered = 0
        self.links_completed = 0
        self.accounts_registered = 0
        self.messages_stored = 0
        self.messages_acknowledged = 0
        self.rate_limit_refusals: defaultdict[str, int] = defaultdict(int)
        self.internal_errors = 0
        self._latency: dict[tuple[str, str, int], _Histogram] = {}

    def rate_limited(self, rule: str) -> None:
        self.rate_limit_refusals[rule] += 1

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        hist = self._latency.get(key)
        if hist is None:
            hist = self._latency[key] = _Histogram()
        hist.observe(seconds)

    def render(self) -> str:
        out: list[str] = []

        def scalar(name: str, kind: str, help_text: str, value: float) -> None:
            out.append(f"# HELP {PREFIX}_{name} {help_text}")
            out.append(f"# TYPE {PREFIX}_{name} {kind}")
            out.append(f"{PREFIX}_{name} {value:g}")

        scalar(
            "open_channels",
            "gauge",
            "Temp websocket channels open on this node.",
            self.open_channels,
        )
        scalar("channels_opened_total", "counter", "Temp channels opened.", self.channels_opened)
        scalar(
            "channels_expired_total",
            "counter",
            "Temp channels closed by their TTL (1001).",
            self.channels_expired,
        )
        scalar(
            "channel_messages_delivered_total",
            "counter",
            "DeviceInit messages relayed to a temp channel.",
            self.channel_messages_delivered,
        )
        scalar(
            "links_completed_total",
            "counter",
            "Secondary devices registered with a provisioning code.",
            self.links_completed,
        )
        scalar(
            "accounts_registered_total",
            "counter",
            "Accounts registered (device 1).",
            self.accounts_registered,
        )
        scalar(
            "messages_stored_total",
            "counter",
            "Device messages stored for delivery.",
            self.messages_stored,
        )
        scalar(
            "messages_acknowledged_total",
            "counter",
            "Stored messages acknowledged.",
            self.messages_acknowledged,
        )
        scalar("internal_errors_total", "counter", "Requests answered 500.", self.internal_errors)

        name = f"{PREFIX}_rate_limit_refusals_total"
        out.append(f"# HELP {name} Requests refused with 429, by rule.")
        out.append(f"# TYPE {name} counter")
        for rule, count in sorted(self.rate_limit_refusals.items()):
            out.append(f'{name}{{rule="{rule}"}} {count}')

        name = f"{PREFIX}_request_duration_seconds"
        out.append(f"# HELP {name} HTTP request latency, by method, route template and status.")
        out.append(f"# TYPE {name} histogram")
        for (method, route, status), hist in sorted(self._latency.items()):
            labels = f'method="{method}",route="{_escape(route)}",status="{status}"'
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS_S, None), hist.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound is None else f"{bound:g}"
                out.append(f'{name}_bucket{{{labels},le="{le}"}} {cumulative}')
            out.append(f"{name}_sum{{{labels}}} {hist.sum:.6f}")
            out.append(f"{name}_count{{{labels}}} {cumulative}")
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
