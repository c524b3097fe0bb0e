"""The workflow consumer's framework scenarios (tests/workflow_scenarios.py) on the real broker
and database: its framework router and partition queues, PostgreSQL units, the parking queue
and `redrive`. Their twin on fakes: tests/unit/test_workflow_consumer_scenarios.py.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from consumers import workflow
from tests.consumer_harness import running
from tests.consumer_scenarios import LiveConsumerDriver, with_failures
from tests.consumer_support import Failures
from tests.workflow_scenarios import SCENARIOS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings
    from tests.consumer_scenarios import ConsumerDriver


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_workflow_consumer_scenario_on_the_broker(
    scenario: Callable[[ConsumerDriver], Awaitable[None]],
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,
    settings: Settings,
) -> None:
    failures = Failures()
    name = f"workflow_{uuid.uuid4().hex[:8]}"  # its own queues and inbox key
    consumer = replace(with_failures(workflow.CONSUMER, failures), name=name)
    async with running(consumer, engine, amqp, settings.amqp) as live:
        await scenario(LiveConsumerDriver(live, failures))
