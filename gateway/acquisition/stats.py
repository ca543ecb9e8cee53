"""Counters every device keeps, whatever its protocol, for the metrics endpoint and the benchmarks."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from drivers.base import Reason

RTT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Round-trip time buckets (upper bounds): loopback and a LAN PLC answer in milliseconds, a
serial meter at 9600 baud in tens, a struggling cellular link in seconds."""

LATENESS_KEPT = 512
"""Polls whose lateness a device remembers (for benchmarks and tests): at most 16 kB per device.
It was 10,000 (320 kB per device once a few hours of 1 s polls had filled it, 32 MB at a hundred
devices), memory that grew per device and over time for a list only a benchmark window reads."""


@dataclass
class DeviceStats:
    """Counters a benchmark or the metrics endpoint reads; cheap to keep, plain numbers only so the
    device knows nothing of who reads them. A device that is pushed changes (a subscription)
    counts each notification it publishes as a poll."""

    polls: int = 0
    requests: int = 0
    failures: int = 0
    values: int = 0
    lateness_s: list[float] = field(default_factory=list)  # start time minus deadline, per poll
    errors: dict[str, int] = field(default_factory=dict)  # bad blocks and lost links, by reason
    rtt_counts: list[int] = field(default_factory=lambda: [0] * (len(RTT_BUCKETS_S) + 1))  # last: +Inf
    rtt_sum_s: float = 0.0

    def record_error(self, reason: Reason) -> None:
        self.errors[reason.value] = self.errors.get(reason.value, 0) + 1

    def record_rtt(self, seconds: float) -> None:
        self.rtt_sum_s += seconds
        self.rtt_counts[bisect.bisect_left(RTT_BUCKETS_S, seconds)] += 1

    def record_lateness(self, seconds: float, keep: int = LATENESS_KEPT) -> None:
        if len(self.lateness_s) >= keep:
            del self.lateness_s[: keep // 2]
        self.lateness_s.append(seconds)
