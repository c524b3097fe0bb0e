"""The framework's four scenarios (tests/consumer_scenarios.py) for the workflow consumer.

Its message is a plan's `PlanApproved`; its one effect, the `StartWorkflow` command it writes
to the outbox. `SCENARIOS` runs with fakes (tests/unit/test_workflow_consumer_scenarios.py)
and on the real broker (tests/integration/test_workflow_consumer.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from events import Actor, Envelope, Message
from events.plan import PlanApproved
from tests.consumer_scenarios import (
    poison_is_parked_later_ones_flow_and_a_redrive_applies_it,
    redelivery_has_one_effect,
    transient_failure_is_retried_to_one_effect,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.consumer_scenarios import ConsumerDriver

EXPECTED = ["StartWorkflow"]  # what one PlanApproved causes


def plan_approved() -> Envelope[Message]:
    """A new plan's `PlanApproved`, as the relay would publish it."""
    plan_id = uuid.uuid4()
    return Envelope[Message](
        id=uuid.uuid4(),
        type="PlanApproved",
        version=2,
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        actor=Actor.of("key:ana"),
        aggregate_type="plan",
        aggregate_id=plan_id,
        aggregate_version=3,
        data=PlanApproved(
            plan_id=plan_id,
            project_id=uuid.uuid4(),
            title="Launch",
            submitted_by="key:sam",
            approvers=("key:ana",),
            auto=False,
        ),
    )


async def redelivery(driver: ConsumerDriver) -> None:
    """Redelivery: the same envelope twice, one effect."""
    message = plan_approved()
    await redelivery_has_one_effect(driver, message)
    assert await driver.effects(message.id) == EXPECTED


async def transient_failure(driver: ConsumerDriver) -> None:
    """Transient failure twice, then success: one effect, nothing parked."""
    await transient_failure_is_retried_to_one_effect(driver, plan_approved(), EXPECTED)


async def poison_then_redrive(driver: ConsumerDriver) -> None:
    """Poison: parked with its reason while a later one flows; re-driven: one effect."""
    await poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
        driver, plan_approved(), plan_approved(), EXPECTED
    )


SCENARIOS: tuple[Callable[[ConsumerDriver], Awaitable[None]], ...] = (
    redelivery,
    transient_failure,
    poison_then_redrive,
)
