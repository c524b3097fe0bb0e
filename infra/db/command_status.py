"""What became of each command, for `GET /v1/commands/{id}`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from events import Actor
from infra.db.tables import command_status

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncSession


class CommandState(StrEnum):
    """A command's outcome as the status URL reports it."""

    ACCEPTED = "accepted"
    PROCESSED = "processed"
    REJECTED = "rejected"


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
    accepted_at: datetime
    updated_at: datetime


class SqlCommandStatuses:
    """Reads and upserts command status rows in the unit of work's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

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
    ) -> None:
        """Insert or replace the outcome of `command_id`."""
        values = {
            "command_id": command_id,
            "type": type,
            "status": CommandState(status).value,
            "result_event_ids": list(result_event_ids),
            "problem": problem,
            "correlation_id": correlation_id,
            "actor": actor.model_dump(mode="json") if actor else None,
        }
        statement = insert(command_status).values(**values)
        changed = {k: statement.excluded[k] for k in values if k != "command_id"}
        await self._session.execute(
            statement.on_conflict_do_update(
                index_elements=["command_id"], set_={**changed, "updated_at": func.now()}
            )
        )

    async def get(self, command_id: uuid.UUID) -> CommandStatus | None:
        """The recorded outcome of `command_id`, or None if none was recorded."""
        query = select(command_status).where(command_status.c.command_id == command_id)
        row = (await self._session.execute(query)).mappings().one_or_none()
        if row is None:
            return None
        return CommandStatus(
            command_id=row["command_id"],
            type=row["type"],
            status=CommandState(row["status"]),
            result_event_ids=tuple(row["result_event_ids"]),
            problem=row["problem"],
            correlation_id=row["correlation_id"],
            actor=Actor.model_validate(row["actor"]) if row["actor"] else None,
            accepted_at=row["accepted_at"],
            updated_at=row["updated_at"],
        )
