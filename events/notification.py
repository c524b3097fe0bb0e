"""Notification: a message to a person on one channel, with a priority and a dedup key."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from uuid import UUID

from annotated_types import MaxLen, MinLen
from pydantic import Field

from events.base import Command, DomainEvent
from events.catalog import catalog
from events.fields import Label, Reason, Text

Recipient = Annotated[str, MinLen(1), MaxLen(2_000)]
DedupKey = Annotated[str, MinLen(1), MaxLen(200)]


class NotificationChannel(StrEnum):
    """How a notification reaches its recipient."""

    IN_APP = "in_app"
    EMAIL = "email"
    CHAT_WEBHOOK = "chat_webhook"


class NotificationPriority(StrEnum):
    """How urgent a notification is."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class SendNotification(Command):
    """Send a notification; a repeated `dedup_key` is sent only once."""

    notification_id: UUID
    channel: NotificationChannel
    priority: NotificationPriority = NotificationPriority.NORMAL
    recipient: Recipient
    subject: Label
    body: Text
    dedup_key: DedupKey | None = None


class NotificationRequested(DomainEvent):
    """A notification was accepted for delivery."""

    notification_id: UUID
    channel: NotificationChannel
    priority: NotificationPriority
    recipient: Recipient
    subject: Label
    body: Text
    dedup_key: DedupKey | None


class NotificationDelivered(DomainEvent):
    """A notification reached its channel."""

    notification_id: UUID
    channel: NotificationChannel
    recipient: Recipient
    attempts: int = Field(ge=1, le=1_000)


class NotificationFailed(DomainEvent):
    """A notification could not be delivered and will not be tried again."""

    notification_id: UUID
    channel: NotificationChannel
    recipient: Recipient
    attempts: int = Field(ge=1, le=1_000)
    error: Reason


catalog.add(SendNotification, version=1)
catalog.add(NotificationRequested, version=1, routing_key="notification.requested")
catalog.add(NotificationDelivered, version=1, routing_key="notification.delivered")
catalog.add(NotificationFailed, version=1, routing_key="notification.failed")
