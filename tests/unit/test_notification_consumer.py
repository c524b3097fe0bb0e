"""The notification consumer with fakes: what an event causes, and the four scenarios.

The same scenarios run on the real broker and PostgreSQL in
`tests/integration/test_notification_consumer.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumers import notification
from domain.notification import notification_id_for
from events import Actor
from events.notification import NotificationChannel, NotificationPriority, SendNotification
from infra.people import NotificationPreferences
from tests.consumer_scenarios import (
    FakeConsumerDriver,
    poison_is_parked_later_ones_flow_and_a_redrive_applies_it,
    redelivery_has_one_effect,
    transient_failure_is_retried_to_one_effect,
    with_failures,
)
from tests.consumer_support import Failures
from tests.notification_support import AL, ANA, BO, MIA, OWEN, envelope, sample, seed
from tests.people_fakes import FakePersonDirectory

if TYPE_CHECKING:
    from events import Envelope, Message

IN_APP, EMAIL, CHAT = (
    NotificationChannel.IN_APP,
    NotificationChannel.EMAIL,
    NotificationChannel.CHAT_WEBHOOK,
)
ASKED = ["SendNotification"] * 3  # an approval request: in-app, e-mail, chat


def driver(people: FakePersonDirectory | None = None) -> FakeConsumerDriver:
    failures = Failures()
    consumer = with_failures(notification.CONSUMER, failures)
    fake = FakeConsumerDriver(consumer, failures, {"people": people or FakePersonDirectory()})
    seed(fake.db)
    return fake


def sent(fake: FakeConsumerDriver, message: Envelope[Message]) -> list[SendNotification]:
    """The commands the message caused, in order."""
    commands = [e.data for e in fake.db.envelopes if e.causation_id == message.id]
    assert all(isinstance(command, SendNotification) for command in commands)
    return commands  # type: ignore[return-value]


def requested() -> Envelope[Message]:
    return envelope(sample("ApprovalRequested"), Actor.system("approval"))


async def test_an_approval_request_sends_the_approver_one_command_per_channel() -> None:
    fake, message = driver(), requested()
    await fake.deliver(message)
    commands = sent(fake, message)
    assert [(c.recipient, c.channel) for c in commands] == [
        (ANA, IN_APP),
        (ANA, EMAIL),
        (ANA, CHAT),
    ]
    for command in commands:
        key = f"{message.id}:{ANA}:{command.channel}"
        assert command.dedup_key == key
        assert command.notification_id == notification_id_for(key)
        assert command.priority is NotificationPriority.HIGH
        assert command.subject == "Approval requested: Budget"
    (first, *_) = [e for e in fake.db.envelopes if e.causation_id == message.id]
    assert first.actor == Actor.system("notification")
    assert first.correlation_id == message.correlation_id


async def test_each_recipient_gets_what_their_preferences_keep() -> None:
    people = FakePersonDirectory()
    people.add(BO, preferences=NotificationPreferences(channels=(IN_APP,)))
    people.add(AL, preferences=NotificationPreferences(min_priority=NotificationPriority.URGENT))
    fake, message = driver(people), envelope(sample("ApprovalReminderDue"))
    await fake.deliver(message)
    assert [(c.recipient, c.channel) for c in sent(fake, message)] == [(BO, IN_APP)]


async def test_a_person_not_in_the_directory_still_gets_the_commands_the_processor_drops() -> None:
    people = FakePersonDirectory()
    people.add(OWEN)
    fake, message = driver(people), envelope(sample("WorkflowCompleted"), Actor.system("tests"))
    await fake.deliver(message)
    recipients = [c.recipient for c in sent(fake, message)]
    assert recipients == [OWEN, OWEN, MIA, MIA]  # MIA is unknown: the rule's channels


async def test_the_member_who_completed_the_workflow_is_not_told() -> None:
    fake, message = driver(), envelope(sample("WorkflowCompleted"), Actor.of(MIA))
    await fake.deliver(message)
    assert {c.recipient for c in sent(fake, message)} == {OWEN}


async def test_an_event_whose_condition_fails_sends_nothing() -> None:
    fake, message = driver(), envelope(sample("TaskFailed", retryable=True))
    await fake.deliver(message)
    assert await fake.effects(message.id) == []
    assert ("notification", message.id) in fake.db.claimed


async def test_redelivery_has_one_effect() -> None:
    await redelivery_has_one_effect(driver(), requested())


async def test_transient_failure_is_retried_to_one_effect() -> None:
    await transient_failure_is_retried_to_one_effect(driver(), requested(), ASKED)


async def test_poison_is_parked_later_ones_flow_and_a_redrive_applies_it() -> None:
    await poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
        driver(), requested(), requested(), ASKED
    )
