"""The approval consumer with fakes: what a submission and a decision cause; the four scenarios.

The same scenarios run on the real broker and PostgreSQL in
`tests/integration/test_approval_consumer.py`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from consumers import approval
from events import Actor, Envelope, Message
from events.plan import PlanApproved, PlanSubmitted
from events.project import ApprovalPolicy
from infra.db.outbox import event_envelope
from infra.db.timer_tables import TIMER_CANCELLATIONS, TIMERS
from infra.message_context import MessageContext
from tests.consumer_scenarios import (
    FakeConsumerDriver,
    poison_is_parked_later_ones_flow_and_a_redrive_applies_it,
    redelivery_has_one_effect,
    transient_failure_is_retried_to_one_effect,
    with_failures,
)
from tests.consumer_support import Failures

SUBMITTED_AT = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
POLICY = ApprovalPolicy(approvers=("key:ana", "key:bo"), required_approvals=2)
SUBMITTER = Actor.of("key:sam")


def submitted(
    *, deadline: timedelta | None = timedelta(hours=10), auto_max_steps: int = 0, steps: int = 2
) -> Envelope[Message]:
    """A `PlanSubmitted` as the processor writes it (`occurred_at` = the submit)."""
    plan_id = uuid.uuid4()
    policy = POLICY.model_copy(update={"auto_approve_max_steps": auto_max_steps})
    event = PlanSubmitted(
        plan_id=plan_id,
        project_id=uuid.uuid4(),
        title="Budget",
        submitted_by=SUBMITTER.principal,
        step_count=steps,
        policy=policy,
        deadline=None if deadline is None else SUBMITTED_AT + deadline,
    )
    context = MessageContext.start(SUBMITTER)
    return event_envelope(
        event,
        aggregate_id=plan_id,
        aggregate_version=2,
        context=context,
        clock=lambda: SUBMITTED_AT,
    )


def approved(plan_id: uuid.UUID) -> Envelope[Message]:
    """The plan's `PlanApproved`."""
    event = PlanApproved(
        plan_id=plan_id,
        project_id=uuid.uuid4(),
        title="Budget",
        submitted_by=SUBMITTER.principal,
        approvers=("key:ana", "key:bo"),
        auto=False,
    )
    context = MessageContext.start(Actor.of("key:bo"))
    return event_envelope(event, aggregate_id=plan_id, aggregate_version=5, context=context)


def expected(plan_id: uuid.UUID) -> list[str]:
    """What a submission with a 10 h deadline causes: the request, two reminders, the deadline."""
    group = approval.timer_group(plan_id)
    return [
        "RequestApprovals",
        f"timer {group}:deadline",
        f"timer {group}:reminder:1",
        f"timer {group}:reminder:2",
    ]


def driver() -> FakeConsumerDriver:
    failures = Failures()
    return FakeConsumerDriver(with_failures(approval.CONSUMER, failures), failures, {})


async def test_a_submission_asks_the_approvers_and_arms_reminders_and_the_deadline() -> None:
    fake, message = driver(), submitted()
    await fake.deliver(message)
    plan_id = message.aggregate_id
    assert plan_id is not None
    assert await fake.effects(message.id) == expected(plan_id)
    timers = {row["key"]: row for row in fake.db.table(TIMERS)}
    group = approval.timer_group(plan_id)
    assert timers[f"{group}:deadline"]["due_at"] == SUBMITTED_AT + timedelta(hours=10)
    assert timers[f"{group}:deadline"]["type"] == "ExpirePlan"
    assert [timers[f"{group}:reminder:{n}"]["due_at"] for n in (1, 2)] == [
        SUBMITTED_AT + timedelta(hours=5),
        SUBMITTED_AT + timedelta(hours=9),
    ]
    (request,) = [e for e in fake.db.envelopes if e.causation_id == message.id]
    assert request.actor == Actor.system("approval")
    assert request.correlation_id == message.correlation_id


async def test_a_plan_the_rule_approves_gets_auto_approval_and_no_timers() -> None:
    fake, message = driver(), submitted(auto_max_steps=3)
    await fake.deliver(message)
    assert await fake.effects(message.id) == ["AutoApprovePlan"]
    (command,) = [e for e in fake.db.envelopes if e.causation_id == message.id]
    assert "auto_approve_max_steps" in getattr(command.data, "rule", "")


async def test_no_deadline_no_timers() -> None:
    fake, message = driver(), submitted(deadline=None)
    await fake.deliver(message)
    assert await fake.effects(message.id) == ["RequestApprovals"]


async def test_a_decision_cancels_the_plans_timers() -> None:
    fake, message = driver(), submitted()
    await fake.deliver(message)
    assert message.aggregate_id is not None
    decision = approved(message.aggregate_id)
    await fake.deliver(decision)
    groups = [row["timer_group"] for row in fake.db.table(TIMER_CANCELLATIONS)]
    assert groups == [approval.timer_group(message.aggregate_id)]


async def test_redelivery_has_one_effect() -> None:
    await redelivery_has_one_effect(driver(), submitted())


async def test_transient_failure_is_retried_to_one_effect() -> None:
    message = submitted()
    assert message.aggregate_id is not None
    await transient_failure_is_retried_to_one_effect(
        driver(), message, expected(message.aggregate_id)
    )


async def test_poison_is_parked_later_ones_flow_and_a_redrive_applies_it() -> None:
    poison, later = submitted(), submitted()
    assert poison.aggregate_id is not None
    await poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
        driver(), poison, later, expected(poison.aggregate_id)
    )
