"""Notification outcomes the command processor decides: delivered, or failed for good.

Both come from hisho's notification-delivery consumer (system only: the processor checks):
`RecordNotificationDelivered` after a channel accepted the message, `RecordNotificationFailed`
from its park hook when the retries are spent or the channel refused it for good. A
notification decided already (a repeated outcome, a re-drive after a failure) is refused
with `notification-not-pending`; the command's status says so and nothing changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from events.notification import RecordNotificationDelivered, RecordNotificationFailed

if TYPE_CHECKING:
    from consumers.command_handlers import Decision, Handler
    from events import Command
    from infra.db.repositories import Aggregates


async def record_notification_delivered(
    command: RecordNotificationDelivered, aggregates: Aggregates, ctx: Decision
) -> None:
    """RecordNotificationDelivered -> Notification.mark_delivered."""
    notification = await aggregates.notifications.require(command.notification_id)
    notification.mark_delivered(attempts=command.attempts, at=ctx.at)


async def record_notification_failed(
    command: RecordNotificationFailed, aggregates: Aggregates, ctx: Decision
) -> None:
    """RecordNotificationFailed -> Notification.mark_failed, with the reason."""
    notification = await aggregates.notifications.require(command.notification_id)
    notification.mark_failed(error=command.error, attempts=command.attempts, at=ctx.at)


HANDLERS: dict[type[Command], Handler] = {
    RecordNotificationDelivered: record_notification_delivered,
    RecordNotificationFailed: record_notification_failed,
}
