"""Held messages of ordered consumers: a parked message and the later ones of its key.

An ordered consumer never applies a message of key K while an earlier message of K is
parked: the unit of work's `hold_guard` refuses the commit (`HeldError`), and the consumer
keeps the message here, behind the one that blocks it. Each row is one message, in arrival
order per (consumer, key): `parked` rows failed and wait for an operator's re-drive; the
others are held back. A commit of a message deletes its own row; when the head of a key is
no longer parked (its re-drive applied it), the consumer applies the held rows in order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from infra.db.engine import driver_of

if TYPE_CHECKING:
    import uuid
    from collections.abc import Mapping

    from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class HeldMessage:
    """One held (or parked) message of an ordered consumer."""

    message_id: uuid.UUID
    parked: bool
    reason: str
    body: bytes
    headers: Mapping[str, Any]


class HeldMessages(Protocol):
    """Where an ordered consumer keeps what it holds back (PostgreSQL; a dict in unit tests)."""

    async def hold(self, consumer: str, key: str, message: HeldMessage) -> None:
        """Append a message to its key's queue (parked or held); an existing row is updated."""
        ...

    async def head(self, consumer: str, key: str) -> HeldMessage | None:
        """The first message held for the key, or None: the key flows."""
        ...

    async def stuck_keys(self, consumer: str) -> list[str]:
        """Keys whose first held message is not parked: to release (after a crash)."""
        ...

    async def drop(self, consumer: str, message_id: uuid.UUID) -> None:
        """Forget a held message that turned out to be applied already (a duplicate)."""
        ...


HOLD_SQL = (
    "INSERT INTO consumer_held (consumer, partition_key, message_id, parked, reason, body,"
    " headers) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
    " ON CONFLICT (consumer, message_id) DO UPDATE"
    " SET parked = consumer_held.parked OR EXCLUDED.parked, reason = EXCLUDED.reason"
)
HEAD_SQL = (
    "SELECT message_id, parked, reason, body, headers FROM consumer_held"
    " WHERE consumer = $1 AND partition_key = $2 ORDER BY seq LIMIT 1"
)
DROP_SQL = "DELETE FROM consumer_held WHERE consumer = $1 AND message_id = $2"
STUCK_SQL = (
    "SELECT DISTINCT ON (partition_key) partition_key, parked FROM consumer_held"
    " WHERE consumer = $1 ORDER BY partition_key, seq"
)


def storable_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The AMQP headers that survive JSON (strings, numbers, booleans)."""
    return {
        name: value
        for name, value in headers.items()
        if isinstance(value, str | int | float | bool) and value is not None
    }


class PgHeldMessages:
    """`HeldMessages` in the `consumer_held` table (migration 0007)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def hold(self, consumer: str, key: str, message: HeldMessage) -> None:
        """Append (or mark parked) one message of `key`."""
        await self._execute(
            HOLD_SQL,
            consumer,
            key,
            message.message_id,
            message.parked,
            message.reason,
            message.body,
            json.dumps(storable_headers(message.headers)),
        )

    async def head(self, consumer: str, key: str) -> HeldMessage | None:
        """The first message held for `key`, or None."""
        async with self._engine.connect() as connection:
            driver = await driver_of(connection)
            row = await driver.fetchrow(HEAD_SQL, consumer, key)
        if row is None:
            return None
        headers = row["headers"]
        return HeldMessage(
            message_id=row["message_id"],
            parked=row["parked"],
            reason=row["reason"],
            body=bytes(row["body"]),
            headers=json.loads(headers) if isinstance(headers, str) else dict(headers),
        )

    async def stuck_keys(self, consumer: str) -> list[str]:
        """Keys whose head is held but not parked."""
        async with self._engine.connect() as connection:
            driver = await driver_of(connection)
            rows = await driver.fetch(STUCK_SQL, consumer)
        return [row["partition_key"] for row in rows if not row["parked"]]

    async def drop(self, consumer: str, message_id: uuid.UUID) -> None:
        """Delete one held message's row."""
        await self._execute(DROP_SQL, consumer, message_id)

    async def _execute(self, sql: str, *args: Any) -> None:  # noqa: ANN401
        async with self._engine.connect() as connection:
            driver = await driver_of(connection)
            await driver.execute(sql, *args)
