"""A person's notification list (`infra.db.notification_tables`): pages, unread count, read marks.

What a person sees: their in-app notifications and every notification of theirs that failed
(any channel, with the reason). Newest first, paged by an opaque cursor (the last row's
creation time and id); `read_at` is the only thing the recipient changes, and only on their
own rows (another person's id reads as absent).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from events.notification import NotificationChannel, NotificationPriority
from infra.db.engine import driver_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

# Every query names the visible rows the same way: the recipient's in-app ones and failures.
_PAGE = (
    "SELECT notification_id, channel, priority, subject, body, status, error, created_at,"
    " read_at FROM notifications"
    " WHERE recipient = $1 AND (channel = 'in_app' OR status = 'failed')"
    " AND ($2::bool IS NULL OR (read_at IS NULL) = $2)"
    " AND ($3::text IS NULL OR priority = $3)"
    " AND ($4::timestamptz IS NULL OR created_at >= $4)"
    " AND ($5::timestamptz IS NULL OR (created_at, notification_id) < ($5, $6::uuid))"
    " ORDER BY created_at DESC, notification_id DESC LIMIT $7"
)
_UNREAD = (
    "SELECT count(*) FROM notifications"
    " WHERE recipient = $1 AND (channel = 'in_app' OR status = 'failed') AND read_at IS NULL"
)
_MARK = (
    "UPDATE notifications SET read_at = CASE WHEN $3 THEN coalesce(read_at, $4) END"
    " WHERE recipient = $1 AND (channel = 'in_app' OR status = 'failed')"
    " AND notification_id = $2"
    " RETURNING notification_id, channel, priority, subject, body, status, error, created_at,"
    " read_at"
)


class NotificationItem(BaseModel):
    """One notification in its recipient's list."""

    model_config = ConfigDict(frozen=True)

    notification_id: uuid.UUID
    channel: NotificationChannel
    priority: NotificationPriority
    subject: str
    body: str
    status: str  # delivered | failed
    error: str | None  # why it failed
    created_at: datetime
    read_at: datetime | None


class InvalidCursorError(ValueError):
    """A cursor this list did not hand out."""


def encode_cursor(item: NotificationItem) -> str:
    """The cursor of the page after `item`."""
    raw = f"{item.created_at.isoformat()}|{item.notification_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor stands for; `InvalidCursorError` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, notification_id = raw.partition("|")
        position = datetime.fromisoformat(at), uuid.UUID(notification_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursorError(cursor) from exc
    if position[0].tzinfo is None:
        raise InvalidCursorError(cursor)
    return position


class SqlNotificationList:
    """The list in PostgreSQL; every method raises the driver's error (or `TimeoutError`)."""

    def __init__(self, engine: AsyncEngine, *, timeout: float = 5.0) -> None:
        self._engine = engine
        self._timeout = timeout

    async def page(
        self,
        recipient: str,
        *,
        unread: bool | None = None,
        priority: NotificationPriority | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[NotificationItem], str | None]:
        """Up to `limit` of the recipient's notifications, newest first, and the next cursor."""
        after: tuple[datetime | None, uuid.UUID | None] = (
            (None, None) if cursor is None else decode_cursor(cursor)
        )
        level = None if priority is None else priority.value
        async with self._connection() as db:
            rows = await db.fetch(_PAGE, recipient, unread, level, since, *after, limit + 1)
        items = [_item(row) for row in rows[:limit]]
        return items, encode_cursor(items[-1]) if len(rows) > limit else None

    async def unread_count(self, recipient: str) -> int:
        """How many of the recipient's notifications are unread."""
        async with self._connection() as db:
            count: int = await db.fetchval(_UNREAD, recipient)
        return count

    async def mark(
        self, recipient: str, notification_id: uuid.UUID, *, read: bool, at: datetime
    ) -> NotificationItem | None:
        """Mark one of the recipient's notifications read (kept if it was) or unread."""
        async with self._connection() as db:
            row = await db.fetchrow(_MARK, recipient, notification_id, read, at)
        return None if row is None else _item(row)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with asyncio.timeout(self._timeout), self._engine.connect() as connection:
            yield await driver_of(connection)


def _item(row: Any) -> NotificationItem:  # noqa: ANN401  (an asyncpg record)
    return NotificationItem.model_validate(dict(row))
