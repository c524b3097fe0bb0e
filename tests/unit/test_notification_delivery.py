"""The notification-delivery consumer with fakes: channels, rows, outcomes; the four scenarios.

The same scenarios run on the real broker and PostgreSQL in
`tests/integration/test_notification_delivery.py`.
"""

from __future__ import annotations

import pytest

from consumers import notification_delivery
from events.notification import NotificationChannel
from hisho.consumers import CONSUMERS
from infra.db.notification_tables import NOTIFICATIONS
from infra.notifications.channel import ChannelRefused, ChannelUnavailable
from tests.consumer_scenarios import (
    FakeConsumerDriver,
    poison_is_parked_later_ones_flow_and_a_redrive_applies_it,
    redelivery_has_one_effect,
    transient_failure_is_retried_to_one_effect,
    with_failures,
)
from tests.consumer_support import Failures
from tests.notification_fakes import RECIPIENT, FakeChannel, fake_deps, requested

DELIVERED = ["RecordNotificationDelivered"]
EMAIL, CHAT, IN_APP = (
    NotificationChannel.EMAIL,
    NotificationChannel.CHAT_WEBHOOK,
    NotificationChannel.IN_APP,
)


def driver(email: FakeChannel | None = None, chat: FakeChannel | None = None) -> FakeConsumerDriver:
    failures = Failures()
    consumer = with_failures(notification_delivery.CONSUMER, failures)
    return FakeConsumerDriver(consumer, failures, fake_deps(email, chat))


def rows(d: FakeConsumerDriver) -> list[dict[str, object]]:
    return d.db.table(NOTIFICATIONS)


async def test_an_in_app_notification_is_its_row_and_is_recorded_delivered() -> None:
    d, message = driver(), requested(IN_APP)
    await d.deliver(message)
    (row,) = rows(d)
    assert row["notification_id"] == message.data.notification_id  # type: ignore[attr-defined]
    assert (row["recipient"], row["status"], row["read_at"]) == (RECIPIENT, "delivered", None)
    assert await d.effects(message.id) == DELIVERED


@pytest.mark.parametrize("channel", [EMAIL, CHAT])
async def test_an_external_notification_is_sent_once_keyed_by_its_id(
    channel: NotificationChannel,
) -> None:
    email, chat = FakeChannel(), FakeChannel()
    d, message = driver(email, chat), requested(channel)
    await d.deliver(message)
    await d.deliver(message)
    sent = (email if channel is EMAIL else chat).sent
    assert [(s.key, who) for s, who in sent] == [
        (str(message.data.notification_id), RECIPIENT)  # type: ignore[attr-defined]
    ]
    assert await d.effects(message.id) == DELIVERED


async def test_an_unavailable_channel_is_tried_again_to_one_send() -> None:
    email = FakeChannel(failures=[ChannelUnavailable("503"), ChannelUnavailable("503")])
    d, message = driver(email), requested(EMAIL)
    await d.deliver(message)
    assert len(email.sent) == 1
    assert message.id not in await d.parked()
    claims = d.deps["effects"].claims
    assert list(claims.values()) == [3]


async def test_a_refusing_channel_parks_the_message_and_marks_the_notification_failed() -> None:
    chat = FakeChannel(failures=[ChannelRefused("chat webhook answered 404")])
    d, message = driver(chat=chat), requested(CHAT)
    await d.deliver(message)
    assert "ChannelRefused: chat webhook answered 404" in (await d.parked())[message.id]
    (row,) = rows(d)
    assert row["status"] == "failed"
    assert "404" in str(row["error"])
    assert await d.effects(message.id) == ["RecordNotificationFailed"]
    await d.redrive(message)  # the receiver is fixed
    assert len(chat.sent) == 1
    assert rows(d)[0]["status"] == "delivered"


@pytest.mark.parametrize("channel", [EMAIL, CHAT])
async def test_an_erased_recipient_gets_nothing_and_the_notification_fails_with_the_reason(
    channel: NotificationChannel,
) -> None:
    email, chat = FakeChannel(), FakeChannel()
    d, message = driver(email, chat), requested(channel, recipient="key:gone")
    await d.deliver(message)
    assert (email.sent, chat.sent, rows(d)) == ([], [], [])
    assert await d.parked() == {}
    (failed,) = [e for e in d.db.envelopes if e.causation_id == message.id]
    assert failed.type == "RecordNotificationFailed"
    assert "key:gone is not in the people directory" in failed.data.error  # type: ignore[attr-defined]


async def test_the_scenario_redelivery_has_one_effect() -> None:
    await redelivery_has_one_effect(driver(), requested(EMAIL))


async def test_the_scenario_transient_failure_is_retried_to_one_effect() -> None:
    await transient_failure_is_retried_to_one_effect(driver(), requested(CHAT), DELIVERED)


async def test_the_scenario_poison_is_parked_and_a_redrive_applies_it() -> None:
    await poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
        driver(),
        requested(EMAIL),
        requested(EMAIL),
        ["RecordNotificationFailed", *DELIVERED],
        parked_effects=["RecordNotificationFailed"],
    )


def test_the_consumer_is_registered_under_its_permanent_name() -> None:
    assert CONSUMERS["notification_delivery"] is notification_delivery.CONSUMER
    assert notification_delivery.CONSUMER.routing_keys == ("notification.requested",)
