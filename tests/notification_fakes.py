"""Fakes of the notification-delivery consumer's dependencies: effects, channels, envelopes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from events import Actor, Envelope, Message
from events.notification import NotificationChannel, NotificationPriority, NotificationRequested
from infra.consumers.effects import EffectClaim
from infra.db.outbox import event_envelope
from infra.message_context import MessageContext
from infra.notifications.channels import Channels
from tests.people_fakes import FakePersonDirectory

if TYPE_CHECKING:
    from infra.consumers.effects import Effects
    from infra.notifications.channel import Channel, Delivery
    from infra.people import Person

REQUESTED_AT = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
RECIPIENT = "key:ana"


class FakeEffects:
    """Claims counted in memory (`done` is never set: the fake inbox answers copies)."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, uuid.UUID], int] = {}

    async def claim(self, consumer: str, message_id: uuid.UUID) -> EffectClaim:
        """Count the claim."""
        key = (consumer, message_id)
        self.claims[key] = self.claims.get(key, 0) + 1
        return EffectClaim(key=str(message_id), attempt=self.claims[key], done=False)


@dataclass
class FakeChannel:
    """Records what it sent; `failures` are raised first, one per send."""

    sent: list[tuple[Delivery, str]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    async def send(self, delivery: Delivery, person: Person) -> None:
        """Fail with the next programmed failure, else record the send."""
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((delivery, person.principal_id))


def fake_deps(email: FakeChannel | None = None, chat: FakeChannel | None = None) -> dict[str, Any]:
    """The consumer's injections with fakes; `RECIPIENT` has an address and a webhook."""
    people = FakePersonDirectory()
    people.add(RECIPIENT, email="ana@example.org", chat_webhook_url="https://chat.example/x")
    channels = Channels(email=email or FakeChannel(), chat=chat or FakeChannel())
    return {"effects": FakeEffects(), "people": people, "channels": channels}


def requested(
    channel: NotificationChannel = NotificationChannel.IN_APP,
    *,
    recipient: str = RECIPIENT,
    priority: NotificationPriority = NotificationPriority.NORMAL,
) -> Envelope[Message]:
    """A `NotificationRequested` as the processor writes it."""
    notification_id = uuid.uuid4()
    event = NotificationRequested(
        notification_id=notification_id,
        channel=channel,
        priority=priority,
        recipient=recipient,
        subject="Plan awaits you",
        body="Budget 2026 needs your approval.",
        dedup_key=f"{uuid.uuid4()}:{recipient}:{channel.value}",
    )
    return event_envelope(
        event,
        aggregate_id=notification_id,
        aggregate_version=1,
        context=MessageContext.start(Actor.system("notification")),
        clock=lambda: REQUESTED_AT,
    )


def _conforms(effects: FakeEffects, channel: FakeChannel) -> tuple[Effects, Channel]:
    return effects, channel  # mypy checks the fakes against the ports
