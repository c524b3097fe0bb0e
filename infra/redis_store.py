"""Redis adapters for the ingress's short-lived state (idempotency, rate limits, markers).

Redis is a cache here, never the system of record: every method raises
`RedisUnavailableError` quickly (short socket timeouts, no client-side retries) when Redis
cannot answer, and the caller decides how to degrade.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from infra.turn_batch import TurnBatch, settle

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


def fail_fast_client(url: str, *, timeout: float) -> Redis:
    """A client that connects lazily and gives up after `timeout` s, with no retries."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class RedisUnavailableError(Exception):
    """Redis did not answer in time (down, unreachable or failing)."""


async def quietly(operation: Awaitable[None]) -> None:
    """Await a best-effort Redis write: an outage is logged, not raised."""
    try:
        await operation
    except RedisUnavailableError as exc:
        structlog.get_logger("hisho.ingress").warning("redis unavailable", error=str(exc))


class Claim(StrEnum):
    """What an idempotency key already stands for."""

    NEW = "new"  # first use: publish
    IN_FLIGHT = "in_flight"  # same body, not yet confirmed (or the first try failed): publish
    PUBLISHED = "published"  # same body, already confirmed by the broker: do not publish
    CONFLICT = "conflict"  # a different body: 409


_PUBLISHED = (
    "local v = redis.call('GET', KEYS[1]) "
    "if v then redis.call('SET', KEYS[1], string.gsub(v, ':pending$', ':published'), 'KEEPTTL') "
    "end return 0"
)

Command = tuple[str | int | float | bytes, ...]


class AutoPipeline:
    """Send the commands issued during one event-loop turn as ONE pipeline.

    Concurrent requests share one write and one read; each awaits only its own replies.
    Under load this turns a round trip per request into a round trip per loop turn.
    """

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._batch = TurnBatch(self._execute)

    def send(self, *commands: Command) -> asyncio.Future[list[Any]]:
        """Queue `commands` for this turn's pipeline; the future gets their replies in order."""
        replies: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._batch.submit((commands, replies))
        return replies

    async def _execute(
        self, batch: list[tuple[tuple[Command, ...], asyncio.Future[list[Any]]]]
    ) -> None:
        pipe = self._client.pipeline(transaction=False)
        for commands, _ in batch:
            for command in commands:
                pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001  (handed to every caller of this batch)
            for _, waiter in batch:
                settle(waiter, [], exc)
            return
        position = 0
        for commands, waiter in batch:
            mine = replies[position : position + len(commands)]
            position += len(commands)
            failure = next((reply for reply in mine if isinstance(reply, Exception)), None)
            settle(waiter, mine, failure)


class RedisIngressStore:
    """Idempotency records, fixed-window rate-limit counters and accepted markers."""

    def __init__(self, client: Redis, *, timeout: float, prefix: str = "hisho:ingress:") -> None:
        self._client = client
        self._pipeline = AutoPipeline(client)
        self._timeout = timeout
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, timeout: float) -> RedisIngressStore:
        """Build a store on its own client; connects lazily, fails fast."""
        return cls(fail_fast_client(url, timeout=timeout), timeout=timeout)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()

    async def _run(self, *commands: Command) -> list[Any]:
        try:
            async with asyncio.timeout(self._timeout * 2):
                return await self._pipeline.send(*commands)
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailableError(str(exc) or type(exc).__name__) from exc

    async def ping(self) -> None:
        """Raise `RedisUnavailableError` unless Redis answers."""
        await self._run(("PING",))

    async def claim(self, command_id: UUID, body_hash: str, *, ttl: int) -> Claim:
        """Claim the idempotency record of `command_id` for a body, or report what it holds."""
        key = f"{self._prefix}idem:{command_id}"
        [held] = await self._run(("EVAL", _CLAIM, 1, key, body_hash, ttl))
        if held is None:
            return Claim.NEW
        stored_hash, _, state = bytes(held).decode().rpartition(":")
        if stored_hash != body_hash:
            return Claim.CONFLICT
        return Claim.PUBLISHED if state == "published" else Claim.IN_FLIGHT

    async def release(self, command_id: UUID) -> None:
        """Forget an idempotency record whose publish failed, so a retry publishes."""
        await self._run(("DEL", f"{self._prefix}idem:{command_id}"))

    async def record_accepted(
        self, command_id: UUID, command_type: str, *, ttl: int, idempotent: bool
    ) -> None:
        """Mark a confirmed command `accepted` (and its idempotency record `published`)."""
        marker: Command = ("SET", f"{self._prefix}cmd:{command_id}", command_type, "EX", ttl)
        if idempotent:
            await self._run(marker, ("EVAL", _PUBLISHED, 1, f"{self._prefix}idem:{command_id}"))
        else:
            await self._run(marker)

    async def accepted_type(self, command_id: UUID) -> str | None:
        """Return the command type of an accepted marker, or None when there is none."""
        [value] = await self._run(("GET", f"{self._prefix}cmd:{command_id}"))
        return bytes(value).decode() if value is not None else None

    async def count_hits(self, bucket: str, hits: int, *, window: int, index: int) -> int:
        """Add `hits` to fixed window `index` (of `window` s) of `bucket`; return its total."""
        key = f"{self._prefix}rl:{bucket}:{index}"
        total, _ = await self._run(("INCRBY", key, hits), ("EXPIRE", key, window + 1, "NX"))
        return int(total)
