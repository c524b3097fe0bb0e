"""Notification: a message to a person on one channel, with a priority and a dedup key.

Version 2 names the recipient by principal id (a person of the directory, `hisho people`),
never by a contact point: the e-mail address or webhook URL is looked up when the message is
delivered, so it never enters the immutable log. A notification to a principal the
directory does not hold is dropped, with the reason, as `NotificationDropped`.
`SendNotification` is hisho's own (its notification rules send it): system only, as are
`RecordNotificationDelivered`/`RecordNotificationFailed` (the delivery consumer's outcomes).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from uuid import UUID

from annotated_types import MaxLen, MinLen
from pydantic import Field

from events.base import Command, DomainEvent
from events.catalog import catalog
from events.fields import Label, Principal, Reason, Text
from events.upcasters import namespaced_v1, upcasters

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
    recipient: Principal
    subject: Label
    body: Text
    dedup_key: DedupKey | None = None


class NotificationRequested(DomainEvent):
    """A notification was accepted for delivery."""

    notification_id: UUID
    channel: NotificationChannel
    priority: NotificationPriority
    recipient: Principal
    subject: Label
    body: Text
    dedup_key: DedupKey | None


class NotificationDelivered(DomainEvent):
    """A notification reached its channel."""

    notification_id: UUID
    channel: NotificationChannel
    recipient: Principal
    attempts: int = Field(ge=1, le=1_000)


class NotificationFailed(DomainEvent):
    """A notification could not be delivered and will not be tried again."""

    notification_id: UUID
    channel: NotificationChannel
    recipient: Principal
    attempts: int = Field(ge=1, le=1_000)
    error: Reason


class NotificationDropped(DomainEvent):
    """A notification was not sent: its recipient is not (or no longer) in the directory."""

    notification_id: UUID
    channel: NotificationChannel
    recipient: Principal
    reason: Reason


class RecordNotificationDelivered(Command):
    """Record that the delivery consumer's channel accepted a notification."""

    notification_id: UUID
    attempts: int = Field(ge=1, le=1_000)


class RecordNotificationFailed(Command):
    """Record that a notification could not be delivered: its message was parked."""

    notification_id: UUID
    attempts: int = Field(ge=1, le=1_000)
    error: Reason


catalog.add(SendNotification, version=2, system_only=True)
catalog.add(RecordNotificationDelivered, version=1, system_only=True)
catalog.add(RecordNotificationFailed, version=1, system_only=True)
catalog.add(NotificationRequested, version=2, routing_key="notification.requested")
catalog.add(NotificationDelivered, version=2, routing_key="notification.delivered")
catalog.add(NotificationFailed, version=2, routing_key="notification.failed")
catalog.add(NotificationDropped, version=1, routing_key="notification.dropped")

for _type in (
    "SendNotification",
    "NotificationRequested",
    "NotificationDelivered",
    "NotificationFailed",
):
    namespaced_v1(upcasters, _type)  # a v1 recipient (an address) reads as `legacy:<address>`
