"""The inbox: a consumer applies each message at most once, in its own transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uuid

    import asyncpg


class AlreadyAppliedError(Exception):
    """A commit found the message's inbox row written by another transaction first.

    Raised by a unit of work whose claim is optimistic (`infra.db.command_unit`): nothing of
    the unit was written, and the message is a duplicate to acknowledge.
    """


# Fixed SQL on the unit of work's raw connection: asyncpg prepares it once per connection.
CLAIM_SQL = (
    "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2)"
    " ON CONFLICT (consumer, message_id) DO NOTHING RETURNING message_id"
)


class SqlInbox:
    """Claims (consumer, message id) pairs in the unit of work's transaction."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
        """Return True the first time; False for a message this consumer already applied.

        A concurrent claim of the same pair waits for the first transaction: it gets False
        if that one commits and True if it rolls back, so exactly one applies the message.
        """
        return await self._connection.fetchval(CLAIM_SQL, consumer, message_id) is not None
