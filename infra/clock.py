"""Time as a dependency: adapters take a `Clock` so tests can pin it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Return the current time, UTC-aware: the default `Clock`."""
    return datetime.now(UTC)
