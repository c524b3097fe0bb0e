"""The inbox: a consumer applies each message at most once, in its own transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql import insert

from infra.db.tables import inbox

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.ext.asyncio import AsyncSession


class SqlInbox:
    """Claims (consumer, message id) pairs in the unit of work's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
        """Return True the first time; False for a message this consumer already applied.

        A concurrent claim of the same pair waits for the first transaction: it gets False
        if that one commits and True if it rolls back, so exactly one applies the message.
        """
        statement = (
            insert(inbox)
            .values(consumer=consumer, message_id=message_id)
            .on_conflict_do_nothing(index_elements=["consumer", "message_id"])
            .returning(inbox.c.message_id)
        )
        result = await self._session.execute(statement)
        return result.scalar_one_or_none() is not None
