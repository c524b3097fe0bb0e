"""The notification-delivery consumer on the real broker and PostgreSQL, with a real local SMTP
server and a real local HTTP receiver: one e-mail / one POST per notification, retries,
parking with the reason, the SSRF guard; and the four framework scenarios (as with fakes in
`tests/unit/test_notification_delivery.py`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pytest

from consumers import notification_delivery
from events import Actor
from events.notification import NotificationChannel
from infra.consumers.effects import PgEffects
from infra.db.engine import driver_of
from infra.db.people import SqlPeople
from infra.message_context import MessageContext
from infra.notifications.channel import ChannelRefused, Delivery
from infra.notifications.channels import channels_for
from infra.notifications.smtp import SmtpChannel, message_id_for
from infra.people import NewPerson
from infra.settings import load_settings
from tests.consumer_harness import running
from tests.consumer_scenarios import (
    LiveConsumerDriver,
    poison_is_parked_later_ones_flow_and_a_redrive_applies_it,
    redelivery_has_one_effect,
    transient_failure_is_retried_to_one_effect,
    with_failures,
)
from tests.consumer_support import Failures
from tests.notification_fakes import requested
from tests.notification_servers import (
    SmtpInbox,
    WebhookReceiver,
    closed_port,
    self_signed,
    smtp_server,
    webhook_receiver,
)
from tests.people_fakes import person

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message
    from infra.settings import Settings

EMAIL, CHAT = NotificationChannel.EMAIL, NotificationChannel.CHAT_WEBHOOK
DELIVERED = ["RecordNotificationDelivered"]
DEADLINE = 20.0


@dataclass
class Setup:
    """The consumer under test, its servers and its recipient."""

    driver: LiveConsumerDriver
    smtp: SmtpInbox
    chat: WebhookReceiver
    recipient: str
    engine: AsyncEngine

    def message(self, channel: NotificationChannel) -> Envelope[Message]:
        return requested(channel, recipient=self.recipient)

    async def row(self, message: Envelope[Message]) -> dict[str, Any] | None:
        sql = "SELECT status, error, recipient FROM notifications WHERE notification_id = $1"
        async with self.engine.connect() as connection:
            found = await (await driver_of(connection)).fetchrow(sql, _id(message))
        return None if found is None else dict(found)


def _id(message: Envelope[Message]) -> uuid.UUID:
    return message.data.notification_id  # type: ignore[attr-defined,no-any-return]


@asynccontextmanager
async def setup(
    settings: Settings,
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,
    *,
    allow_private: bool = True,
    smtp_port: int | None = None,
    recipient: str | None = None,
) -> AsyncIterator[Setup]:
    """The consumer under its own name, short delays, channels pointed at local servers."""
    async with smtp_server() as smtp, webhook_receiver() as chat:
        recipient = recipient or f"key:it-{uuid.uuid4().hex[:10]}"
        people = SqlPeople(engine)
        person = NewPerson(
            principal_id=recipient,
            display_name="Ana",
            email="ana@example.org",
            chat_webhook_url=chat.url,
        )
        await people.register(person, context=MessageContext.start(Actor.system("test")))
        channel_settings = load_settings(
            smtp_host="127.0.0.1",
            smtp_port=smtp.port if smtp_port is None else smtp_port,
            smtp_timeout=2.0,
            chat_webhook_timeout=2.0,
            chat_webhook_allow_private=allow_private,
        )
        deps = {
            "effects": PgEffects(engine),
            "people": people,
            "channels": channels_for(channel_settings),
        }
        failures = Failures()
        consumer = replace(
            with_failures(notification_delivery.CONSUMER, failures),
            name=f"delivery_it_{uuid.uuid4().hex[:8]}",
            retry_delays_ms=(100, 200),
        )
        async with running(consumer, engine, amqp, settings.amqp, deps=deps) as live:
            yield Setup(LiveConsumerDriver(live, failures), smtp, chat, recipient, engine)


async def test_one_email_per_notification_even_when_delivered_twice(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with setup(settings, engine, amqp) as s:
        message = s.message(EMAIL)
        await s.driver.deliver(message)
        await s.driver.deliver(message)
        (mail,) = s.smtp.messages
        assert mail["Message-ID"] == f"<{_id(message)}@hisho>"
        assert mail["To"] == "ana@example.org"
        assert mail["From"] == "hisho@localhost"
        assert await s.driver.effects(message.id) == DELIVERED
        outbox = await s.driver._query(
            "SELECT data::text FROM outbox WHERE causation_id = $1", message.id
        )
        assert all("ana@example.org" not in row[0] for row in outbox)  # never in the log


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback only
async def test_the_email_channel_logs_in_when_a_username_is_configured() -> None:
    async with smtp_server(password="s3cret") as smtp:
        channel_settings = load_settings(
            smtp_port=smtp.port,
            smtp_username="hisho",
            smtp_password="s3cret",
            smtp_from="bot@hisho.example",
        )
        recipient = person("key:ana", email="ana@example.org")
        delivery = Delivery(uuid.uuid4(), "normal", "Hi", "Hello")
        await SmtpChannel(channel_settings).send(delivery, recipient)
        assert smtp.logins == [("hisho", "s3cret")]
        (mail,) = smtp.messages
        assert mail["From"] == "bot@hisho.example"
        wrong = load_settings(smtp_port=smtp.port, smtp_username="hisho", smtp_password="nope")
        with pytest.raises(ChannelRefused, match="535"):
            await SmtpChannel(wrong).send(delivery, recipient)


async def test_the_email_channel_upgrades_with_starttls_when_configured(tmp_path: Path) -> None:
    context, certificate = self_signed(tmp_path)
    async with smtp_server(tls=context) as smtp:
        recipient = person("key:ana", email="ana@example.org")
        delivery = Delivery(uuid.uuid4(), "normal", "Hi", "Hello")
        plain = load_settings(smtp_port=smtp.port, smtp_timeout=2.0)
        with pytest.raises(ChannelRefused, match="530"):  # the server requires STARTTLS
            await SmtpChannel(plain).send(delivery, recipient)
        upgraded = load_settings(
            smtp_port=smtp.port, smtp_starttls=True, smtp_ca_file=certificate, smtp_timeout=2.0
        )
        await SmtpChannel(upgraded).send(delivery, recipient)
        assert smtp.tls == [True]
        assert [mail["Message-ID"] for mail in smtp.messages] == [message_id_for(delivery)]


async def test_an_in_app_notification_is_one_row_even_when_delivered_twice(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with setup(settings, engine, amqp) as s:
        message = s.message(NotificationChannel.IN_APP)
        await s.driver.deliver(message)
        await s.driver.deliver(message)
        sql = "SELECT count(*) FROM notifications WHERE notification_id = $1"
        assert await s.driver._query(sql, _id(message)) == [(1,)]
        assert (await s.row(message) or {}).get("status") == "delivered"
        assert await s.driver.effects(message.id) == DELIVERED
        assert (s.smtp.messages, s.chat.requests) == ([], [])


async def test_one_post_per_notification_with_its_idempotency_key(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with setup(settings, engine, amqp) as s:
        message = s.message(CHAT)
        await s.driver.deliver(message)
        await s.driver.deliver(message)
        (post,) = s.chat.requests
        assert post.headers["idempotency-key"] == str(_id(message))
        assert post.headers["x-hisho-notification-id"] == str(_id(message))
        assert post.body == {"text": "*Plan awaits you*\nBudget 2026 needs your approval."}


async def test_a_receiver_answering_503_twice_is_retried_to_one_delivery(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with setup(settings, engine, amqp) as s:
        s.chat.answers = [503, 503]
        message = s.message(CHAT)
        await s.driver.deliver(message)
        assert [r.status for r in s.chat.requests] == [503, 503, 200]
        assert len(s.chat.accepted) == 1
        assert await s.driver.effects(message.id) == DELIVERED
        assert message.id not in await s.driver.parked()


async def test_a_receiver_down_for_good_parks_the_message_and_fails_the_notification(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with setup(settings, engine, amqp, smtp_port=closed_port()) as s:
        message = s.message(EMAIL)
        await s.driver.live.publish(message)
        reason = await _parked_reason(s, message)
        assert reason.startswith(
            "gave up after 2 delayed retries: ChannelUnavailable: SMTP server unavailable"
        )
        row = await s.row(message)
        assert row is not None
        assert (row["status"], row["recipient"]) == ("failed", s.recipient)
        assert "SMTP server unavailable" in row["error"]
        assert await s.driver.effects(message.id) == ["RecordNotificationFailed"]


async def test_a_4xx_is_not_retried_and_a_redrive_after_the_fix_posts_once(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with setup(settings, engine, amqp) as s:
        s.chat.answers = [404]
        message = s.message(CHAT)
        await s.driver.deliver(message)
        assert "chat webhook answered 404" in (await s.driver.parked())[message.id]
        assert len(s.chat.requests) == 1
        await s.driver.redrive(message)
        assert [r.status for r in s.chat.requests] == [404, 200]
        assert (await s.row(message) or {}).get("status") == "delivered"


async def test_the_ssrf_guard_refuses_a_loopback_webhook_by_default(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    assert load_settings().chat_webhook_allow_private is False
    async with setup(settings, engine, amqp, allow_private=False) as s:
        message = s.message(CHAT)
        await s.driver.deliver(message)
        reason = (await s.driver.parked())[message.id]
        assert "non-public address (127.0.0.1)" in reason
        assert s.chat.requests == []
        assert (await s.row(message) or {}).get("status") == "failed"


async def test_the_scenario_redelivery_has_one_effect(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with setup(settings, engine, amqp) as s:
        await redelivery_has_one_effect(s.driver, s.message(EMAIL))
        assert len(s.smtp.messages) == 1


async def test_the_scenario_transient_failure_is_retried_to_one_effect(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with setup(settings, engine, amqp) as s:
        await transient_failure_is_retried_to_one_effect(s.driver, s.message(CHAT), DELIVERED)
        assert len(s.chat.requests) == 1


async def test_the_scenario_poison_is_parked_and_a_redrive_applies_it(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with setup(settings, engine, amqp) as s:
        poison, later = s.message(EMAIL), s.message(EMAIL)
        await poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
            s.driver,
            poison,
            later,
            ["RecordNotificationFailed", *DELIVERED],
            parked_effects=["RecordNotificationFailed"],
        )
        ids = sorted(mail["Message-ID"] for mail in s.smtp.messages)
        assert ids == sorted(f"<{_id(m)}@hisho>" for m in (poison, later))


async def _parked_reason(s: Setup, message: Envelope[Message]) -> str:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        parked = await s.driver.parked()
        if message.id in parked:
            return parked[message.id]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{message.id} was not parked")
