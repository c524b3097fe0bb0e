"""Redis adapters for the ingress's short-lived state (idempotency, rate limits, markers).

Redis is a cache here, never the system of record: every method raises
`RedisUnavailableError` quickly (short socket timeouts, no client-side retries) when Redis
cannot answer, and the caller decides how to degrade.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from uuid import UUID

# GET the idempotency record; when absent, SET it to `<hash>:pending` with a TTL. One round
# trip, atomic: two racing requests cannot both see "new".
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1] .. ':pending', 'EX', ARGV[2])
return false
"""


class RedisUnavailableError(Exception):
    """Redis did not answer in time (down, unreachable or failing)."""


class Claim(StrEnum):
    """What an idempotency key already stands for."""

    NEW = "new"  # first use: publish
    IN_FLIGHT = "in_flight"  # same body, not yet confirmed (or the first try failed): publish
    PUBLISHED = "published"  # same body, already confirmed by the broker: do not publish
    CONFLICT = "conflict"  # a different body: 409


class RedisIngressStore:
    """Idempotency records, fixed-window rate-limit counters and accepted markers."""

    def __init__(self, client: Redis, *, timeout: float, prefix: str = "hisho:ingress:") -> None:
        self._client = client
        self._timeout = timeout
        self._prefix = prefix
        self._claim = client.register_script(_CLAIM)

    @classmethod
    def from_url(cls, url: str, *, timeout: float) -> RedisIngressStore:
        """Build a store on its own client; connects lazily, fails fast."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, timeout=timeout)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()

    async def _call(self, operation: Awaitable[Any]) -> Any:  # noqa: ANN401
        try:
            async with asyncio.timeout(self._timeout * 2):
                return await operation
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailableError(str(exc) or type(exc).__name__) from exc

    async def ping(self) -> None:
        """Raise `RedisUnavailableError` unless Redis answers."""
        await self._call(self._client.ping())

    async def claim(self, command_id: UUID, body_hash: str, *, ttl: int) -> Claim:
        """Claim the idempotency record of `command_id` for a body, or report what it holds."""
        key = f"{self._prefix}idem:{command_id}"
        held = await self._call(self._claim(keys=[key], args=[body_hash, ttl]))
        if held is None:
            return Claim.NEW
        stored_hash, _, state = bytes(held).decode().rpartition(":")
        if stored_hash != body_hash:
            return Claim.CONFLICT
        return Claim.PUBLISHED if state == "published" else Claim.IN_FLIGHT

    async def release(self, command_id: UUID) -> None:
        """Forget an idempotency record whose publish failed, so a retry publishes."""
        await self._call(self._client.delete(f"{self._prefix}idem:{command_id}"))

    async def record_accepted(
        self, command_id: UUID, command_type: str, *, ttl: int, idempotent: bool
    ) -> None:
        """Mark a confirmed command `accepted` (and its idempotency record `published`)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.set(f"{self._prefix}cmd:{command_id}", command_type, ex=ttl)
        if idempotent:
            key = f"{self._prefix}idem:{command_id}"
            pipe.eval(
                "local v = redis.call('GET', KEYS[1]) "
                "if v then redis.call('SET', KEYS[1], string.gsub(v, ':pending$', ':published'),"
                " 'KEEPTTL') end return 0",
                1,
                key,
            )
        await self._call(pipe.execute())

    async def accepted_type(self, command_id: UUID) -> str | None:
        """Return the command type of an accepted marker, or None when there is none."""
        value = await self._call(self._client.get(f"{self._prefix}cmd:{command_id}"))
        return bytes(value).decode() if value is not None else None

    async def hit(self, bucket: str, *, limit: int, window: int, now: float) -> float | None:
        """Count one request in `bucket`'s fixed window; seconds to wait when over `limit`."""
        index = int(now // window)
        key = f"{self._prefix}rl:{bucket}:{index}"
        pipe = self._client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window + 1, nx=True)
        count, _ = await self._call(pipe.execute())
        if int(count) <= limit:
            return None
        return (index + 1) * window - now
