"""What became of each command, for `GET /v1/commands/{id}`: the processor's own repository.

`record_status(uow, ...)` writes an outcome through the unit of work's extra rows (so it
commits with the command's inbox row, state and events, or alone for a parked command);
`PgCommandStatuses.get` reads one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from events import Actor
from infra.db.tables import COMMAND_STATUS, command_status

if TYPE_CHECKING:
    import uuid
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    import asyncpg

    from infra.db.uow import Rows


class _WithRows(Protocol):
    @property
    def rows(self) -> Rows: ...


GET_SQL = f"SELECT * FROM {COMMAND_STATUS.name} WHERE command_id = $1"  # noqa: S608


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


def record_status(
    uow: _WithRows,
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
    """Insert or replace the outcome of `command_id` when `uow` commits.

    The table's rule applies: an outcome only moves forward (a decided command is never
    marked failed; `infra.db.tables.COMMAND_STATUS`).
    """
    row = (
        command_id,
        type,
        CommandState(status).value,
        list(result_event_ids),
        None if problem is None else json.dumps(problem),
        correlation_id,
        actor.model_dump_json() if actor else None,
        body_sha256,
    )
    uow.rows.add(COMMAND_STATUS, row)


class PgCommandStatuses:
    """Reads command status rows, through a session or a raw asyncpg connection."""

    def __init__(self, reader: AsyncSession | asyncpg.Connection) -> None:
        self._reader = reader

    async def get(self, command_id: uuid.UUID) -> CommandStatus | None:
        """The recorded outcome of `command_id`, or None if none was recorded."""
        row: Mapping[Any, Any] | asyncpg.Record | None
        if isinstance(self._reader, AsyncSession):
            query = select(command_status).where(command_status.c.command_id == command_id)
            row = (await self._reader.execute(query)).mappings().one_or_none()
        else:
            row = await self._reader.fetchrow(GET_SQL, command_id)
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
