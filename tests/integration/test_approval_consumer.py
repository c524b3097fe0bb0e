"""The approval consumer's four scenarios on the real broker and PostgreSQL (as with fakes in
`tests/unit/test_approval_consumer.py`), through the framework's router."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from consumers import approval
from tests.consumer_harness import running
from tests.consumer_scenarios import (
    LiveConsumerDriver,
    poison_is_parked_later_ones_flow_and_a_redrive_applies_it,
    redelivery_has_one_effect,
    transient_failure_is_retried_to_one_effect,
    with_failures,
)
from tests.consumer_support import Failures
from tests.unit.test_approval_consumer import submitted

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings


@asynccontextmanager
async def live_driver(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> AsyncIterator[LiveConsumerDriver]:
    """The approval consumer under its own name (no other process reads its queues)."""
    failures = Failures()
    name = f"approval_it_{uuid.uuid4().hex[:8]}"
    consumer = replace(with_failures(approval.CONSUMER, failures), name=name)
    async with running(consumer, engine, amqp, settings.amqp) as live:
        yield LiveConsumerDriver(live, failures)


def _expected(plan_id: uuid.UUID | None) -> list[str]:
    group = approval.timer_group(plan_id)  # type: ignore[arg-type]
    return [
        "RequestApprovals",
        f"timer {group}:deadline",
        f"timer {group}:reminder:1",
        f"timer {group}:reminder:2",
    ]


async def test_redelivery_has_one_effect(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with live_driver(settings, engine, amqp) as driver:
        await redelivery_has_one_effect(driver, submitted())


async def test_transient_failure_is_retried_to_one_effect(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    message = submitted()
    async with live_driver(settings, engine, amqp) as driver:
        await transient_failure_is_retried_to_one_effect(
            driver, message, _expected(message.aggregate_id)
        )


async def test_poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    poison, later = submitted(), submitted()
    async with live_driver(settings, engine, amqp) as driver:
        await poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
            driver, poison, later, _expected(poison.aggregate_id)
        )
