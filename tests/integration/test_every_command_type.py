"""Every command type of the catalog runs once through the real processor, broker and database.

One processor for the module; each command type gets its scenario (tests/catalog_scenarios.py):
the state it needs is built by commands, then the command must be `processed` with its events.
A command type without a scenario fails here by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from events import Command, catalog
from infra.db.engine import create_engine
from tests.catalog_scenarios import run_catalog_scenario
from tests.processor_support import BrokerDriver, Deliveries, running_processor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

COMMAND_TYPES = [e.model for e in catalog.entries() if e.kind == "command"]


@pytest.fixture(scope="module")
async def driver(
    settings: Settings, amqp: AbstractRobustConnection, engine: AsyncEngine
) -> AsyncIterator[BrokerDriver]:
    """One in-process processor for every command type's scenario."""
    processor_engine = create_engine(settings, pool_size=10, max_overflow=10)
    deliveries = Deliveries()
    try:
        async with running_processor(settings, processor_engine, deliveries):
            yield BrokerDriver(amqp, engine, deliveries)
    finally:
        await processor_engine.dispose()


@pytest.mark.parametrize("command_type", COMMAND_TYPES, ids=lambda t: t.__name__)
async def test_every_command_type_is_processed_on_the_real_database(
    command_type: type[Command], driver: BrokerDriver
) -> None:
    await run_catalog_scenario(driver, command_type)
