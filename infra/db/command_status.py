"""What became of each command, for `GET /v1/commands/{id}`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from events import Actor
from infra.db.tables import command_status

if TYPE_CHECKING:
    import uuid
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncSession


STATUS_COLUMNS = (
    "command_id, type, status, result_event_ids, problem, correlation_id, actor, body_sha256"
)
# What an upsert of a status row replaces (after `INSERT INTO command_status (...) <rows>`).
# An outcome only moves forward: accepted -> failed -> processed | rejected. A decided
# command (processed, rejected) is never marked failed (a copy of it parked later), nor is a
# failed one marked accepted again; a re-drive that succeeds replaces `failed`.
# `accepted_at` is never replaced.
ON_CONFLICT_REPLACE = (
    " ON CONFLICT (command_id) DO UPDATE SET"
    " type = excluded.type, status = excluded.status,"
    " result_event_ids = excluded.result_event_ids, problem = excluded.problem,"
    " correlation_id = excluded.correlation_id, actor = excluded.actor,"
    " body_sha256 = excluded.body_sha256, updated_at = now()"
    " WHERE command_status.status NOT IN ('processed', 'rejected')"
    " AND (excluded.status <> 'accepted' OR command_status.status = 'accepted')"
)
# On a unit of work's raw asyncpg connection (asyncpg prepares it once per connection);
# only fixed column names are formatted in.
UPSERT_SQL = (
    f"INSERT INTO command_status ({STATUS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"  # noqa: S608
    + ON_CONFLICT_REPLACE
)
GET_SQL = "SELECT * FROM command_status WHERE command_id = $1"


class CommandState(StrEnum):
    """A command's outcome as the status URL reports it."""

    ACCEPTED = "accepted"
    PROCESSED = "processed"
    REJECTED = "rejected"
    FAILED = "failed"  # parked by the runtime (problem: why); a re-drive may still decide it


@dataclass(frozen=True)
class CommandStatus:
    """One command's recorded outcome."""

    command_id: uuid.UUID
    type: str
    status: CommandState
    result_event_ids: tuple[uuid.UUID, ...]
    problem: dict[str, Any] | None
    correlation_id: uuid.UUID | None
    actor: Actor | None
    body_sha256: str | None  # of the command the outcome is for (events.envelope.body_sha256)
    accepted_at: datetime
    updated_at: datetime


class SqlCommandStatuses:
    """Reads command status rows; upserts them in a unit of work's transaction.

    `connection` is the unit of work's raw asyncpg connection (writes need it); a session
    alone is enough to read.
    """

    def __init__(self, session: AsyncSession, connection: asyncpg.Connection | None = None) -> None:
        self._session = session
        self._connection = connection

    async def record(
        self,
        command_id: uuid.UUID,
        *,
        type: str,  # noqa: A002  (the column's name)
        status: CommandState,
        result_event_ids: Sequence[uuid.UUID] = (),
        problem: dict[str, Any] | None = None,
        correlation_id: uuid.UUID | None = None,
        actor: Actor | None = None,
        body_sha256: str | None = None,
    ) -> None:
        """Insert or replace the outcome of `command_id`."""
        if self._connection is None:
            raise RuntimeError("recording a command status needs a unit of work's connection")
        await self._connection.execute(
            UPSERT_SQL,
            command_id,
            type,
            CommandState(status).value,
            list(result_event_ids),
            None if problem is None else json.dumps(problem),
            correlation_id,
            actor.model_dump_json() if actor else None,
            body_sha256,
        )

    async def get(self, command_id: uuid.UUID) -> CommandStatus | None:
        """The recorded outcome of `command_id`, or None if none was recorded."""
        query = select(command_status).where(command_status.c.command_id == command_id)
        row = (await self._session.execute(query)).mappings().one_or_none()
        return None if row is None else status_from_row(row)


def status_from_row(row: Mapping[Any, Any] | asyncpg.Record) -> CommandStatus:
    """A `command_status` row (SQLAlchemy mapping or asyncpg record) as a `CommandStatus`."""
    return CommandStatus(
        command_id=row["command_id"],
        type=row["type"],
        status=CommandState(row["status"]),
        result_event_ids=tuple(row["result_event_ids"]),
        problem=row["problem"],
        correlation_id=row["correlation_id"],
        actor=Actor.model_validate(row["actor"]) if row["actor"] else None,
        body_sha256=row["body_sha256"],
        accepted_at=row["accepted_at"],
        updated_at=row["updated_at"],
    )
