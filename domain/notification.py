"""Notification: requested -> delivered | failed, on one channel, once per dedup key.

A notification to a recipient the people directory does not hold (never registered, or
erased) is not requested at all: it is stored `dropped`, with the reason.

Deduplication spans notifications, so it is the caller's part: with a `dedup_key`, use
`notification_id_for(dedup_key)` as the id; a repeat then finds the notification already
stored and is dropped instead of creating a second one. Transient delivery errors are
retried by the consumer runtime; only the final outcome is recorded here.

Error codes: notification-not-pending.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID, uuid5

from domain.aggregate import Aggregate
from domain.errors import DomainError
from events.notification import (
    NotificationChannel,
    NotificationDelivered,
    NotificationDropped,
    NotificationFailed,
    NotificationPriority,
    NotificationRequested,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

_DEDUP_NAMESPACE = UUID("6f1d3c1e-5b0a-4d55-9a55-6e6f74696679")


class NotificationError(DomainError):
    """A notification command broke a notification rule."""


class NotificationStatus(StrEnum):
    """Where a notification stands."""

    REQUESTED = "requested"
    DELIVERED = "delivered"
    FAILED = "failed"
    DROPPED = "dropped"


@dataclass(frozen=True)
class NotificationContent:
    """What a notification says, to whom, and how."""

    channel: NotificationChannel
    priority: NotificationPriority
    recipient: str
    subject: str
    body: str
    dedup_key: str | None = None


def notification_id_for(dedup_key: str) -> UUID:
    """The notification id for a dedup key (deterministic, UUIDv5)."""
    return uuid5(_DEDUP_NAMESPACE, dedup_key)


class Notification(Aggregate):
    """A message to one recipient and the outcome of its delivery."""

    aggregate_type = "notification"

    def __init__(
        self, notification_id: UUID, *, content: NotificationContent, version: int = 0
    ) -> None:
        super().__init__(notification_id, version=version)
        self.content = content
        self.status = NotificationStatus.REQUESTED
        self.attempts = 0
        self.error: str | None = None

    @classmethod
    def request(
        cls, *, notification_id: UUID, content: NotificationContent, at: datetime
    ) -> Notification:
        """Accept a notification for delivery."""
        notification = cls(notification_id, content=content)
        requested = NotificationRequested(notification_id=notification_id, **asdict(content))
        notification._record(requested, at=at)
        return notification

    @classmethod
    def drop(
        cls, *, notification_id: UUID, content: NotificationContent, reason: str, at: datetime
    ) -> Notification:
        """Refuse a notification nobody can receive (its recipient is not in the directory)."""
        notification = cls(notification_id, content=content)
        notification.status = NotificationStatus.DROPPED
        notification.error = reason
        dropped = NotificationDropped(
            notification_id=notification_id,
            channel=content.channel,
            recipient=content.recipient,
            reason=reason,
        )
        notification._record(dropped, at=at)
        return notification

    def mark_delivered(self, *, attempts: int, at: datetime) -> None:
        """Record that the channel accepted the notification."""
        self._require_requested()
        self.status = NotificationStatus.DELIVERED
        self.attempts = attempts
        delivered = NotificationDelivered(
            notification_id=self.id,
            channel=self.content.channel,
            recipient=self.content.recipient,
            attempts=attempts,
        )
        self._record(delivered, at=at)

    def mark_failed(self, *, error: str, attempts: int, at: datetime) -> None:
        """Record that delivery failed for good."""
        self._require_requested()
        self.status = NotificationStatus.FAILED
        self.attempts = attempts
        self.error = error
        failed = NotificationFailed(
            notification_id=self.id,
            channel=self.content.channel,
            recipient=self.content.recipient,
            attempts=attempts,
            error=error,
        )
        self._record(failed, at=at)

    def _require_requested(self) -> None:
        if self.status is not NotificationStatus.REQUESTED:
            raise NotificationError(
                "notification-not-pending", f"notification {self.id} is already {self.status}"
            )

    def to_state(self) -> dict[str, Any]:
        """The current state as a JSON-ready dict."""
        return {
            "id": str(self.id),
            "channel": self.content.channel.value,
            "priority": self.content.priority.value,
            "recipient": self.content.recipient,
            "subject": self.content.subject,
            "body": self.content.body,
            "dedup_key": self.content.dedup_key,
            "status": self.status.value,
            "attempts": self.attempts,
            "error": self.error,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, version: int) -> Self:
        """Rebuild a notification from its stored state."""
        content = NotificationContent(
            channel=NotificationChannel(state["channel"]),
            priority=NotificationPriority(state["priority"]),
            recipient=state["recipient"],
            subject=state["subject"],
            body=state["body"],
            dedup_key=state["dedup_key"],
        )
        notification = cls(UUID(state["id"]), content=content, version=version)
        notification.status = NotificationStatus(state["status"])
        notification.attempts = state["attempts"]
        notification.error = state["error"]
        return notification
