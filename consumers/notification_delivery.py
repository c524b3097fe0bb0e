"""The notification-delivery consumer: each `NotificationRequested` reaches its channel once.

- **in-app**: the notification's row in the people's list (`infra.db.notification_tables`),
  written in the unit of the inbox row: exactly once, however often the event comes.
- **e-mail, chat webhook**: the framework's external-effect bracket (`infra.consumers.effects`):
  the claim, keyed by the notification id, commits before the send; the send carries the
  notification id (e-mail `Message-ID`, webhook `Idempotency-Key`); the effect's record
  commits with the inbox row. A copy that comes after the record is acknowledged by the
  inbox and sends nothing. A crash between the send and the record sends again with the
  same key: a webhook receiver that deduplicates sees one POST; SMTP cannot deduplicate,
  so that window (the server's `250` to the unit's commit, milliseconds) can give one
  duplicate e-mail with the same Message-ID, never a lost one.

The contact point (e-mail address, webhook URL) is read from the people directory when the
message is delivered and goes nowhere else: not into the event log, not into logs. An
e-mail or chat recipient erased since the notification was requested gets nothing and no row
is kept: the notification is recorded failed with that reason (not parked: nothing to fix).
In-app needs no contact point and does not look the directory up again (the processor did).

Every delivery is then recorded on the notification through the outbox, as `system:` +
`NAME`: `RecordNotificationDelivered`. A channel that fails transiently (refused connection,
timeout, SMTP 4xx, HTTP 408/429/5xx: `ChannelUnavailable`) is retried by the framework (in
process, then along the delay ladder); one that refuses for good (no contact point, SMTP
5xx, HTTP 4xx, an address the SSRF guard refuses: `ChannelRefused`) is poison and parked at
once. A parked notification is marked failed with the parking reason (`record_failed`, the
park hook: `RecordNotificationFailed` and a failed row in the person's list), stays in the
parked console, and can be re-driven there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from events import Actor, ContractError, catalog
from events.notification import (
    NotificationChannel,
    NotificationRequested,
    RecordNotificationDelivered,
    RecordNotificationFailed,
)
from infra.consumers import Consumer
from infra.consumers.effects import record_effect
from infra.db.notification_tables import DELIVERED, FAILED, NOTIFICATIONS
from infra.message_context import MessageContext
from infra.notifications.channel import ChannelUnavailable, Delivery
from infra.people import LOOKUP_PREFETCH

if TYPE_CHECKING:
    from events import Envelope
    from infra.consumers import Parked
    from infra.consumers.effects import Effects
    from infra.db.uow import UnitOfWork
    from infra.notifications.channels import Channels
    from infra.people import PersonDirectory

NAME = "notification_delivery"
ACTOR = Actor.system(NAME)
log = structlog.get_logger("hisho.notification_delivery")


def _row(
    envelope: Envelope[NotificationRequested], status: str, error: str | None = None
) -> tuple[object, ...]:
    requested = envelope.data
    return (
        requested.notification_id,
        requested.recipient,
        requested.channel.value,
        requested.priority.value,
        requested.subject,
        requested.body,
        status,
        error,
        envelope.occurred_at,
    )


async def notification_requested(
    envelope: Envelope[NotificationRequested],
    uow: UnitOfWork,
    *,
    effects: Effects,
    people: PersonDirectory,
    channels: Channels,
) -> None:
    """Deliver on the notification's channel, then record it delivered."""
    requested, context = envelope.data, MessageContext.caused_by(envelope, actor=ACTOR)
    attempt = 1
    if requested.channel is not NotificationChannel.IN_APP:
        sent = await _send(
            requested, uow, context, effects=effects, people=people, channels=channels
        )
        if sent is None:
            return
        attempt = sent
    uow.rows.add(NOTIFICATIONS, _row(envelope, DELIVERED))
    delivered = RecordNotificationDelivered(
        notification_id=requested.notification_id, attempts=attempt
    )
    await uow.outbox.add_command(delivered, context=context)


async def _send(
    requested: NotificationRequested,
    uow: UnitOfWork,
    context: MessageContext,
    *,
    effects: Effects,
    people: PersonDirectory,
    channels: Channels,
) -> int | None:
    """The external effect's bracket: the attempt that sent it, or None (nothing to send)."""
    claim = await effects.claim(NAME, requested.notification_id)  # 1. committed now
    if claim.done:
        return None  # a copy delivered it meanwhile
    person = await people.get(requested.recipient)  # the contact point, read now
    if person is None:  # erased since it was requested: nothing is sent or kept of it
        gone = f"{requested.recipient} is not in the people directory (erased)"
        failed = RecordNotificationFailed(
            notification_id=requested.notification_id, attempts=1, error=gone
        )
        await uow.outbox.add_command(failed, context=context)
        return None
    delivery = Delivery(
        requested.notification_id, requested.priority.value, requested.subject, requested.body
    )
    await channels[requested.channel].send(delivery, person)  # 2. keyed by the id
    record_effect(uow, NAME, requested.notification_id, {"attempt": claim.attempt})  # 3.
    return claim.attempt


async def record_failed(parked: Parked, uow: UnitOfWork) -> None:
    """Mark a parked notification failed, with the reason, in its list and on the aggregate."""
    try:
        envelope = catalog.decode(parked.body)
    except ContractError:
        log.warning("parked message is not a notification", reason=parked.settlement.reason)
        return
    if not isinstance(envelope.data, NotificationRequested):
        return
    reason = parked.settlement.reason
    transient = parked.settlement.error == ChannelUnavailable.__name__
    rounds = 1 + len(CONSUMER.retry_delays_ms) if transient else 1
    uow.rows.add(NOTIFICATIONS, _row(envelope, FAILED, reason))  # type: ignore[arg-type]
    failed = RecordNotificationFailed(
        notification_id=envelope.data.notification_id, attempts=rounds, error=reason[:4_000]
    )
    await uow.outbox.add_command(failed, context=MessageContext.caused_by(envelope, actor=ACTOR))


CONSUMER = Consumer(
    name=NAME,
    handlers={NotificationRequested: notification_requested},
    on_park=record_failed,
    prefetch=LOOKUP_PREFETCH,
)
