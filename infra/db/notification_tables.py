"""The people's notification list: in-app notifications, and every channel's failures.

One row per notification id, written by the notification-delivery consumer
(`consumers.notification_delivery`) in the unit of its inbox row:

- an in-app notification is its row (`status` delivered): the in-app channel *is* this table;
- an e-mail or chat notification whose delivery failed for good gets a row too (`status`
  failed, with the reason), so the person sees it in their list; one delivered later (a
  re-drive) replaces its failed row with a delivered one.

Only the recipient reads their rows (`GET /v1/notifications`); `read_at` is the one column
changed in place (mark read/unread), never by the consumer's writes. Contact points are
not stored here: they stay in the people directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Index

from infra.db.table import Column, Conflict, Table
from infra.db.tables import metadata, sql_table

if TYPE_CHECKING:
    from collections.abc import Mapping

DELIVERED = "delivered"
FAILED = "failed"


def _was_failed(stored: Mapping[str, Any], _new: Mapping[str, Any]) -> bool:
    return bool(stored["status"] == FAILED)


NOTIFICATIONS = Table(
    "notifications",
    (
        Column("notification_id", "uuid", nullable=False, primary_key=True),
        Column("recipient", "text", nullable=False),  # the recipient's principal id
        Column("channel", "text", nullable=False),
        Column("priority", "text", nullable=False),
        Column("subject", "text", nullable=False),
        Column("body", "text", nullable=False),
        Column("status", "text", nullable=False),  # delivered | failed
        Column("error", "text"),  # why it failed, for a failed one
        Column("created_at", "timestamptz", nullable=False),  # when it was requested
        Column("read_at", "timestamptz", written=False),  # set and cleared by its recipient
    ),
    # A failed row is replaced by a later outcome; a delivered one is never touched again.
    Conflict(
        key=("notification_id",),
        replace=True,
        where="notifications.status = 'failed'",
        allows=_was_failed,
    ),
)

__all__ = ["DELIVERED", "FAILED", "NOTIFICATIONS", "metadata", "notifications"]

notifications = sql_table(
    NOTIFICATIONS,
    # A person's list, newest first, and their unread count.
    Index("notifications_recipient", "recipient", "created_at", "notification_id"),
)
