"""PostgreSQL's stand-in for the ingress's Redis state, used only while Redis cannot answer.

Rows mirror what Redis would hold (`infra/db/ingress_tables.py`), with the same TTLs as an
`expires_at`; a row past it counts as absent. Expired rows are deleted opportunistically:
fallback writes and liveness checks delete up to `SWEEP_BATCH` of them per table, at most
once per `sweep_interval` seconds per process (the `expires_at` indexes keep that cheap).
Every method raises `FallbackUnavailableError` when PostgreSQL does not answer in time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from infra.db.ingress_tables import ingress_accepted, ingress_idempotency
from infra.db.tables import command_status
from infra.redis_store import Claim

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

SWEEP_BATCH = 500
log = structlog.get_logger("hisho.ingress")

T = TypeVar("T")
_idem = ingress_idempotency.c
_accepted = ingress_accepted.c


class FallbackUnavailableError(Exception):
    """PostgreSQL did not answer in time either."""


def _claim_of(stored_hash: str, state: str, body_hash: str) -> Claim:
    if stored_hash != body_hash:
        return Claim.CONFLICT
    return Claim.PUBLISHED if state == "published" else Claim.IN_FLIGHT


class SqlIngressFallback:
    """Idempotency records and accepted markers in PostgreSQL (`IngressFallback`)."""

    def __init__(
        self, engine: AsyncEngine, *, timeout: float = 2.0, sweep_interval: float = 1.0
    ) -> None:
        self._engine = engine
        self._timeout = timeout
        self._sweep_interval = sweep_interval
        self._next_sweep = 0.0

    async def _run(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, sweep: bool = False
    ) -> T:
        try:
            async with asyncio.timeout(self._timeout), self._engine.connect() as conn:
                async with conn.begin():
                    result = await work(conn)
                if sweep:
                    await self._sweep(conn)
                return result
        except Exception as exc:
            raise FallbackUnavailableError(str(exc) or type(exc).__name__) from exc

    async def claim(self, command_id: UUID, body_hash: str, *, ttl: int) -> Claim:
        """Claim `command_id` for a body, or report what the processor or an earlier claim holds.

        Atomic: the INSERT ... ON CONFLICT either writes a new (or renews an expired) record,
        or locks the live one, which the next statement of the same transaction then reads.
        """

        async def work(conn: AsyncConnection) -> Claim:
            recorded = await conn.scalar(
                select(command_status.c.body_sha256).where(
                    command_status.c.command_id == command_id
                )
            )
            if recorded is not None:
                return Claim.PUBLISHED if recorded == body_hash else Claim.CONFLICT
            row = {"command_id": command_id, "body_sha256": body_hash, "state": "pending"}
            claim = insert(ingress_idempotency).values(**row, expires_at=_after(ttl))
            claim = claim.on_conflict_do_update(
                index_elements=[_idem.command_id],
                set_={
                    "body_sha256": claim.excluded.body_sha256,
                    "state": claim.excluded.state,
                    "expires_at": claim.excluded.expires_at,
                },
                where=_idem.expires_at <= func.now(),
            )
            if (await conn.execute(claim.returning(_idem.command_id))).first() is not None:
                return Claim.NEW
            held = (await conn.execute(_live_record(command_id))).one()
            return _claim_of(held.body_sha256, held.state, body_hash)

        return await self._run(work, sweep=True)

    async def held(self, command_id: UUID, body_hash: str) -> Claim | None:
        """What a live record of `command_id` stands for with this body; None without one."""

        async def work(conn: AsyncConnection) -> Claim | None:
            held = (await conn.execute(_live_record(command_id))).first()
            return None if held is None else _claim_of(held.body_sha256, held.state, body_hash)

        return await self._run(work)

    async def release(self, command_id: UUID) -> None:
        """Forget the record of a command whose publish failed."""

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(delete(ingress_idempotency).where(_idem.command_id == command_id))

        await self._run(work)

    async def record_accepted(
        self, command_id: UUID, command_type: str, *, ttl: int, idempotent: bool
    ) -> None:
        """Mark a confirmed command `accepted` (and its idempotency record `published`)."""

        async def work(conn: AsyncConnection) -> None:
            marker = insert(ingress_accepted).values(
                command_id=command_id, type=command_type, expires_at=_after(ttl)
            )
            await conn.execute(
                marker.on_conflict_do_update(
                    index_elements=[_accepted.command_id],
                    set_={"type": marker.excluded.type, "expires_at": marker.excluded.expires_at},
                )
            )
            if idempotent:
                await conn.execute(
                    update(ingress_idempotency)
                    .where(_idem.command_id == command_id, _idem.expires_at > func.now())
                    .values(state="published")
                )

        await self._run(work, sweep=True)

    async def accepted_type(self, command_id: UUID) -> str | None:
        """The type of a live accepted marker, or None."""

        async def work(conn: AsyncConnection) -> str | None:
            found: str | None = await conn.scalar(
                select(_accepted.type).where(
                    _accepted.command_id == command_id, _accepted.expires_at > func.now()
                )
            )
            return found

        return await self._run(work)

    async def holds_live_rows(self) -> bool:
        """Whether any record or marker has not expired yet (what Redis may not know)."""

        async def work(conn: AsyncConnection) -> bool:
            live = or_(
                exists().where(_idem.expires_at > func.now()),
                exists().where(_accepted.expires_at > func.now()),
            )
            return bool(await conn.scalar(select(live)))

        return await self._run(work, sweep=True)

    async def _sweep(self, conn: AsyncConnection) -> None:
        """Delete a bounded batch of expired rows, at most once per interval; never fails."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_interval
        try:
            async with conn.begin():
                for table in (ingress_idempotency, ingress_accepted):
                    await conn.execute(_expired_batch(table))
        except Exception as exc:  # noqa: BLE001  (the write it follows has committed)
            log.warning("ingress fallback: expired rows not swept", error=repr(exc))


def _after(ttl: int) -> Any:  # noqa: ANN401  (a SQL expression)
    return func.now() + timedelta(seconds=ttl)


def _live_record(command_id: UUID) -> Any:  # noqa: ANN401  (a SELECT)
    return select(_idem.body_sha256, _idem.state).where(
        _idem.command_id == command_id, _idem.expires_at > func.now()
    )


def _expired_batch(table: Table) -> Any:  # noqa: ANN401  (a DELETE)
    expired = (
        select(table.c.command_id)
        .where(table.c.expires_at <= func.now())
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    )
    return delete(table).where(table.c.command_id.in_(expired.scalar_subquery()))
