"""The scheduler's figures: timers fired, cancelled and failed, and their lag (due → fired).

Plain counters and a cumulative histogram (Prometheus' shape: upper bounds in seconds, a
count per bound, the sum and the count), kept by the process that fires, so an endpoint
such as `/metrics` can read them as they are.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Upper bounds of the lag buckets, in seconds (the last, +Inf, is implied by `count`).
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class LagHistogram:
    """Observed lags, bucketed (`buckets[i]`: lags at most `LAG_BUCKETS[i]`, cumulative)."""

    bounds: tuple[float, ...] = LAG_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0
    max: float = 0.0

    def observe(self, seconds: float) -> None:
        """Count one lag."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1
        self.max = max(self.max, seconds)

    def buckets(self) -> list[tuple[float, int]]:
        """(upper bound, how many lags were at most it), cumulative; +Inf last."""
        cumulative, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            out.append((bound, cumulative))
        return out


@dataclass
class SchedulerMetrics:
    """What one scheduler process did since it started."""

    fired: int = 0  # commands written to the outbox
    cancelled: int = 0  # due timers found cancelled (nothing sent)
    failed: int = 0  # due timers whose command could not be read (nothing sent)
    batches: int = 0  # firing transactions committed
    lag: LagHistogram = field(default_factory=LagHistogram)


METRICS = SchedulerMetrics()  # the process's; a scheduler may be given its own (tests)
