"""Per-caller fixed-window rate limit, counted in Redis and shared by every ingress process.

Redis stays off the request path while a caller is under its limit: each process decides
from the window's total as Redis last reported it plus its own hits Redis has not heard of
yet, and reports them (INCRBY) in the background at most every `sync_interval` seconds per
caller. Before refusing, it reports and reads the total synchronously, so a 429 is always
backed by Redis's count. A caller can therefore exceed its limit only by what other
processes admitted since their last report. When Redis cannot answer, the limit fails open
(docs/http.md): losing Redis must not stop commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.redis_store import RedisUnavailableError
from producers.ingress.problems import ProblemError, retry_after

if TYPE_CHECKING:
    from collections.abc import Callable

    from producers.ingress.ports import IngressStore

_MAX_CALLERS = 10_000


@dataclass
class _Window:
    """One caller's current window as this process sees it."""

    index: int
    reported: int = 0  # the window's total across processes, as Redis last said
    unreported: int = 0  # hits this process admitted that Redis has not heard of
    last_sync: float = -math.inf
    syncing: asyncio.Task[None] | None = None


class RateLimiter:
    """At most `limit` requests per caller per `window` seconds (fixed windows)."""

    def __init__(
        self,
        store: IngressStore,
        *,
        limit: int,
        window: int,
        sync_interval: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._limit = limit
        self._window = window
        self._sync_interval = sync_interval
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    async def check(self, caller: str) -> None:
        """Admit one request of `caller`, or raise a 429 problem with Retry-After."""
        now = self._clock()
        state = self._current(caller, now)
        if state.reported + state.unreported >= self._limit and await self._confirmed(
            caller, state
        ):
            raise ProblemError(
                429,
                "rate-limited",
                "Too many requests",
                f"at most {self._limit} requests per {self._window} s per key",
                headers=retry_after((state.index + 1) * self._window - now),
            )
        state.unreported += 1
        if state.syncing is None and time.monotonic() - state.last_sync >= self._sync_interval:
            state.syncing = asyncio.create_task(self._background(caller, state))

    async def _confirmed(self, caller: str, state: _Window) -> bool:
        """Whether Redis confirms the caller is at its limit; False (fail open) without it."""
        try:
            await self._report(caller, state)
        except RedisUnavailableError:
            return False
        return state.reported >= self._limit

    async def flush(self) -> None:
        """Wait for background reports, then report what is left (tests, shutdown)."""
        for caller, state in list(self._windows.items()):
            with contextlib.suppress(RedisUnavailableError):
                await self._report(caller, state)

    def _current(self, caller: str, now: float) -> _Window:
        index = int(now // self._window)
        state = self._windows.get(caller)
        if state is None or state.index != index:
            if len(self._windows) >= _MAX_CALLERS:
                self._windows.clear()
            state = self._windows[caller] = _Window(index)
        return state

    async def _report(self, caller: str, state: _Window) -> None:
        if state.syncing is not None and state.syncing is not asyncio.current_task():
            await asyncio.shield(state.syncing)
        hits, state.unreported = state.unreported, 0
        try:
            total = await self._store.count_hits(
                caller, hits, window=self._window, index=state.index
            )
        except RedisUnavailableError:
            state.unreported += hits
            raise
        state.reported = max(state.reported, total)

    async def _background(self, caller: str, state: _Window) -> None:
        try:
            await self._report(caller, state)
        except RedisUnavailableError:
            pass  # counted locally; reported with the next sync
        finally:
            state.last_sync = time.monotonic()
            state.syncing = None
