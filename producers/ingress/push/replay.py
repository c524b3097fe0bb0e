"""What a reconnecting client missed, read from the event log (`infra.eventlog`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from events.notification import NotificationChannel, NotificationRequested
from infra.db.outbox import ENVELOPE_COLUMNS, envelope_from_row
from infra.db.tables import outbox
from infra.eventlog.reader import EventFilter
from producers.ingress.push.hub import PushedNotification

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message

NOTIFICATIONS = EventFilter(types=("NotificationRequested",))


def pushed(envelope: Envelope[Message]) -> PushedNotification | None:
    """The pushed form of an in-app `NotificationRequested` envelope; None for anything else."""
    data = envelope.data
    if (
        not isinstance(data, NotificationRequested)
        or data.channel is not NotificationChannel.IN_APP
    ):
        return None
    if envelope.position is None:
        return None
    return PushedNotification(
        position=envelope.position,
        notification_id=data.notification_id,
        recipient=data.recipient,
        priority=data.priority,
        subject=data.subject,
        body=data.body,
        occurred_at=envelope.occurred_at,
    )


class SqlMissedNotifications:
    """`push.session.MissedNotifications` on the outbox: keyset by position, one query."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def missed(self, principal: str, *, after: int, limit: int) -> list[PushedNotification]:
        """Up to `limit` of `principal`'s in-app notifications after `after`, in log order."""
        where = EventFilter(types=NOTIFICATIONS.types, after=after).conditions()
        query = (
            select(*(outbox.c[name] for name in ENVELOPE_COLUMNS))
            .where(
                *where,
                outbox.c.data["recipient"].astext == principal,
                outbox.c.data["channel"].astext == NotificationChannel.IN_APP.value,
            )
            .order_by(outbox.c.position)
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        found = (pushed(envelope_from_row(row)) for row in rows)
        return [item for item in found if item is not None]
