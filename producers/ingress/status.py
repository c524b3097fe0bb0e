"""What became of a command: the processor's record in PostgreSQL, else the accepted marker.

The marker is Redis's, or the PostgreSQL fallback's while Redis is down (`fallback.py`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import structlog
from pydantic import BaseModel
from sqlalchemy import select

from infra.db.tables import command_status
from infra.redis_store import RedisUnavailableError
from producers.ingress.problems import ProblemError, retry_after

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from producers.ingress.ports import IngressStore

DB_TIMEOUT = 2.0
log = structlog.get_logger("hisho.ingress")


class CommandStatusView(BaseModel):
    """A command's status: `accepted`, then `processed`, `rejected` or `failed` (parked)."""

    command_id: UUID
    type: str
    status: Literal["accepted", "processed", "rejected", "failed"]
    result_event_ids: list[UUID] = []
    problem: dict[str, Any] | None = None
    correlation_id: UUID | None = None
    accepted_at: datetime | None = None
    updated_at: datetime | None = None


def database_unavailable(exc: BaseException) -> ProblemError:
    """503: PostgreSQL did not answer in time."""
    return ProblemError(
        503,
        "database-unavailable",
        "Database unavailable",
        f"the system of record cannot be read: {type(exc).__name__}",
        headers=retry_after(1),
    )


class StatusReader:
    """Reads `command_status`, then the ingress's short-lived `accepted` marker."""

    def __init__(self, engine: AsyncEngine, store: IngressStore) -> None:
        self._engine = engine
        self._store = store

    async def status(self, command_id: UUID) -> CommandStatusView:
        """Return the command's status, or raise a 404 (unknown) or 503 problem."""
        recorded = await self._recorded(command_id)
        if recorded is not None:
            return recorded
        try:
            command_type = await self._store.accepted_type(command_id)
        except RedisUnavailableError as exc:
            # Neither Redis nor its PostgreSQL fallback answered: "not processed yet" and
            # "never accepted" look the same; say so rather than answer a 404 that may be wrong.
            raise ProblemError(
                503,
                "status-unavailable",
                "Status unavailable",
                "the command is not processed yet and the accepted-marker stores are down",
                headers=retry_after(1),
            ) from exc
        if command_type is None:
            raise ProblemError(404, "not-found", "Not found", f"no command {command_id}")
        return CommandStatusView(command_id=command_id, type=command_type, status="accepted")

    async def body_sha256(self, command_id: UUID) -> str | None:
        """The body hash of the recorded command (`CommandRecords`); None if there is none.

        Only asked when Redis is down: if PostgreSQL cannot answer either, None (the command
        is published and the processor's inbox applies its id once).
        """
        query = select(command_status.c.body_sha256).where(
            command_status.c.command_id == command_id
        )
        try:
            async with asyncio.timeout(DB_TIMEOUT), self._engine.connect() as conn:
                found: str | None = (await conn.execute(query)).scalar_one_or_none()
        except Exception as exc:  # noqa: BLE001  (degraded: say so, go on without it)
            log.warning("idempotency degraded: command records unreadable", error=repr(exc))
            return None
        return found

    async def _recorded(self, command_id: UUID) -> CommandStatusView | None:
        query = select(command_status).where(command_status.c.command_id == command_id)
        try:
            async with asyncio.timeout(DB_TIMEOUT), self._engine.connect() as conn:
                row = (await conn.execute(query)).first()
        except Exception as exc:
            raise database_unavailable(exc) from exc
        if row is None:
            return None
        return CommandStatusView(
            command_id=row.command_id,
            type=row.type,
            status=row.status,
            result_event_ids=list(row.result_event_ids or []),
            problem=row.problem,
            correlation_id=row.correlation_id,
            accepted_at=row.accepted_at,
            updated_at=row.updated_at,
        )
