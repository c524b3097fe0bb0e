"""The ingress's short-lived state: Redis, and PostgreSQL in its place while Redis is down.

The fast path is Redis alone. Only when a Redis call fails or times out is the idempotency
record or accepted marker kept in (and read from) the PostgreSQL fallback. What the fallback
holds stays authoritative after Redis is back (a restarted Redis is empty): while it holds
unexpired rows, a key Redis has never seen and a marker Redis does not have are also looked
up there. Whether it holds any is checked at most every `recheck_seconds` per process (and
is known at once after this process wrote there), so outside outages Redis stays alone.
When PostgreSQL cannot answer either, `RedisUnavailableError` is raised as before.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, TypeVar

import structlog

from infra.db.ingress_fallback import FallbackUnavailableError
from infra.redis_store import Claim, RedisUnavailableError, quietly

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from producers.ingress.ports import IngressFallback, IngressStore

log = structlog.get_logger("hisho.ingress")
T = TypeVar("T")


class FallbackIngressStore:
    """An `IngressStore` on Redis that falls back to PostgreSQL for records and markers."""

    def __init__(
        self,
        redis: IngressStore,
        fallback: IngressFallback,
        *,
        recheck_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._fallback = fallback
        self._recheck = recheck_seconds
        self._clock = clock
        self._live = False  # the fallback may hold unexpired rows
        self._checked_at = -math.inf
        self._degraded = False

    async def ping(self) -> None:
        """Raise unless Redis answers (readiness reports Redis itself)."""
        await self._redis.ping()

    async def count_hits(self, bucket: str, hits: int, *, window: int, index: int) -> int:
        """Rate-limit counters live in Redis only (the limiter fails open without it)."""
        return await self._redis.count_hits(bucket, hits, window=window, index=index)

    async def aclose(self) -> None:
        """Release Redis's connections."""
        await self._redis.aclose()

    async def claim(self, command_id: UUID, body_hash: str, *, ttl: int) -> Claim:
        """Claim in Redis; in PostgreSQL when Redis fails; a NEW in Redis is checked there."""
        try:
            claim = await self._redis.claim(command_id, body_hash, ttl=ttl)
        except RedisUnavailableError as exc:
            self._redis_failed(exc)
            claim = await _or_unavailable(self._fallback.claim(command_id, body_hash, ttl=ttl))
            self._wrote()
            return claim
        self._redis_answered()
        if claim is not Claim.NEW or not await self._may_hold():
            return claim
        try:
            held = await self._fallback.held(command_id, body_hash)
        except FallbackUnavailableError as exc:
            log.warning("ingress fallback unreadable", error=str(exc))
            return claim
        if held in (Claim.CONFLICT, Claim.PUBLISHED):
            # The fallback decides; leave Redis without a record so every retry asks it too.
            await quietly(self._redis.release(command_id))
            return held
        return claim

    async def release(self, command_id: UUID) -> None:
        """Forget the record wherever it may be."""
        try:
            await self._redis.release(command_id)
        except RedisUnavailableError as exc:
            self._redis_failed(exc)
            await _or_unavailable(self._fallback.release(command_id))
            return
        if await self._may_hold():
            try:
                await self._fallback.release(command_id)
            except FallbackUnavailableError as exc:
                log.warning("ingress fallback: record not released", error=str(exc))

    async def record_accepted(
        self, command_id: UUID, command_type: str, *, ttl: int, idempotent: bool
    ) -> None:
        """Mark a confirmed command accepted in Redis, or in PostgreSQL when Redis fails."""
        try:
            await self._redis.record_accepted(
                command_id, command_type, ttl=ttl, idempotent=idempotent
            )
        except RedisUnavailableError as exc:
            self._redis_failed(exc)
            await _or_unavailable(
                self._fallback.record_accepted(
                    command_id, command_type, ttl=ttl, idempotent=idempotent
                )
            )
            self._wrote()
            return
        self._redis_answered()

    async def accepted_type(self, command_id: UUID) -> str | None:
        """Redis's marker; the fallback's when Redis fails or has none while it holds rows.

        Redis failing and the fallback without a marker raises `RedisUnavailableError`: the
        command may have been accepted (into Redis) before the outage, so None would be a
        404 that may be wrong.
        """
        try:
            found = await self._redis.accepted_type(command_id)
        except RedisUnavailableError as exc:
            self._redis_failed(exc)
            kept = await _or_unavailable(self._fallback.accepted_type(command_id))
            if kept is None:
                raise
            return kept
        self._redis_answered()
        if found is None and await self._may_hold():
            # Unreadable: a 503 (raised as Redis's error), not a 404 that may be wrong.
            return await _or_unavailable(self._fallback.accepted_type(command_id))
        return found

    async def _may_hold(self) -> bool:
        now = self._clock()
        if now - self._checked_at < self._recheck:
            return self._live
        self._checked_at = now
        try:
            self._live = await self._fallback.holds_live_rows()
        except FallbackUnavailableError as exc:
            log.warning("ingress fallback unreadable", error=str(exc))
            self._live = False
        return self._live

    def _wrote(self) -> None:
        self._live, self._checked_at = True, self._clock()

    def _redis_failed(self, exc: RedisUnavailableError) -> None:
        if not self._degraded:
            self._degraded = True
            log.warning("redis unavailable: ingress state kept in postgresql", error=str(exc))

    def _redis_answered(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("redis answers again: ingress state back in redis")


async def _or_unavailable(operation: Awaitable[T]) -> T:
    try:
        return await operation
    except FallbackUnavailableError as exc:
        raise RedisUnavailableError(f"redis and its postgresql fallback: {exc}") from exc
