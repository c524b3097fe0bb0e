"""Revoked JWT ids (`jti`): PostgreSQL holds the list, Redis a copy for the hot path.

`revoked_tokens` is the source of truth. Redis keeps one key per revoked id, expiring with
the token (`hisho:jwt:revoked:<jti>`), and a marker (`hisho:jwt:revoked-synced`) saying the
copy is complete; the marker lives `SYNC_SECONDS` and whoever finds it gone reads PostgreSQL
and copies every unexpired row again. So:

- Redis has the id: revoked. Redis has the marker but not the id: not revoked.
- No marker (Redis restarted empty, flushed, or the marker expired): PostgreSQL answers,
  and the copy is rebuilt.
- Redis fails: PostgreSQL answers. Both fail: `RevocationUnavailableError` (a 503), never
  "not revoked".

A revocation is written to PostgreSQL first, then to Redis. If that Redis write fails, the
ingress sees the revocation once the marker expires (at most `SYNC_SECONDS` later).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from infra.db.key_tables import revoked_tokens

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger("hisho.auth.revocation")
SYNC_SECONDS = 60
_PREFIX = "hisho:jwt:revoked:"
_SYNCED = "hisho:jwt:revoked-synced"
_DATABASE_TIMEOUT = 2.0
_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class RevocationUnavailableError(Exception):
    """Neither Redis nor PostgreSQL can say whether a token id was revoked."""


@dataclass(frozen=True)
class RevokedToken:
    """One revoked token id, as stored."""

    jti: str
    expires_at: datetime
    reason: str
    revoked_at: datetime


def redis_key(jti: str) -> str:
    """The Redis key marking `jti` revoked."""
    return f"{_PREFIX}{jti}"


class TokenRevocations:
    """The revocation list: `is_revoked` for the ingress; `revoke`, `list_revoked` for the CLI."""

    def __init__(self, redis: Redis, engine: AsyncEngine, *, timeout: float) -> None:
        self._redis = redis
        self._engine = engine
        self._timeout = timeout
        self._syncing: asyncio.Task[None] | None = None

    async def is_revoked(self, jti: str) -> bool:
        """Whether `jti` was revoked (Redis first, PostgreSQL when Redis cannot say)."""
        try:
            async with asyncio.timeout(self._timeout):
                revoked, synced = await self._redis.mget(redis_key(jti), _SYNCED)
        except _REDIS_ERRORS as exc:
            log.warning("redis unavailable, revocations read from postgresql", error=repr(exc))
            return await self._in_database(jti)
        if revoked is not None:
            return True
        if synced is not None:
            return False
        found = await self._in_database(jti)
        self._resync_soon()
        return found

    async def revoke(self, jti: str, *, expires_at: datetime, reason: str = "") -> bool:
        """Revoke `jti` until `expires_at`: PostgreSQL, then Redis. False if Redis failed.

        Revoking an id again keeps the later expiry and the first reason.
        """
        statement = insert(revoked_tokens).values(jti=jti, expires_at=expires_at, reason=reason)
        statement = statement.on_conflict_do_update(
            index_elements=[revoked_tokens.c.jti],
            set_={"expires_at": statement.excluded.expires_at},
            where=revoked_tokens.c.expires_at < statement.excluded.expires_at,
        )
        stored = select(revoked_tokens.c.expires_at).where(revoked_tokens.c.jti == jti)
        async with self._engine.begin() as conn:
            await conn.execute(statement)
            until = (await conn.execute(stored)).scalar_one()
        try:
            await self._copy([(jti, until)], within=self._timeout)
        except _REDIS_ERRORS as exc:
            log.warning("revocation not copied to redis", jti=jti, error=repr(exc))
            return False
        return True

    async def list_revoked(self) -> list[RevokedToken]:
        """Every revoked id, newest revocation first (expired ones included)."""
        query = select(revoked_tokens).order_by(
            revoked_tokens.c.revoked_at.desc(), revoked_tokens.c.jti
        )
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
        return [RevokedToken(row.jti, row.expires_at, row.reason, row.revoked_at) for row in rows]

    async def resync(self) -> None:
        """Copy every unexpired revocation from PostgreSQL to Redis, then set the marker."""
        query = select(revoked_tokens.c.jti, revoked_tokens.c.expires_at).where(
            revoked_tokens.c.expires_at > datetime.now(UTC)
        )
        async with self._engine.connect() as conn:
            rows = [(row.jti, row.expires_at) for row in await conn.execute(query)]
        await self._copy(rows, within=_DATABASE_TIMEOUT)
        async with asyncio.timeout(self._timeout):
            await self._redis.set(_SYNCED, "1", ex=SYNC_SECONDS)

    async def _in_database(self, jti: str) -> bool:
        query = select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)
        try:
            async with asyncio.timeout(_DATABASE_TIMEOUT), self._engine.connect() as conn:
                return (await conn.execute(query)).first() is not None
        except Exception as exc:  # any driver error: the database is unusable
            log.warning("revocation list unavailable", error=repr(exc))
            raise RevocationUnavailableError("the revocation list cannot be read") from exc

    async def _copy(self, rows: list[tuple[str, datetime]], *, within: float) -> None:
        now = datetime.now(UTC)
        live = [(jti, expires_at) for jti, expires_at in rows if expires_at > now]
        if not live:
            return
        async with asyncio.timeout(within), self._redis.pipeline(transaction=False) as pipe:
            for jti, expires_at in live:
                pipe.set(redis_key(jti), "1", exat=int(expires_at.timestamp()) + 1)
            await pipe.execute()

    def _resync_soon(self) -> None:
        """Rebuild the Redis copy in the background, one rebuild at a time per process."""
        if self._syncing is not None and not self._syncing.done():
            return
        self._syncing = asyncio.get_running_loop().create_task(self._resync_quietly())

    async def _resync_quietly(self) -> None:
        try:
            await self.resync()
        except Exception as exc:  # noqa: BLE001  (best effort: the next miss tries again)
            log.warning("revocation resync failed", error=repr(exc))
