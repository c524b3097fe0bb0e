"""Every command type of the catalog, once, through `handle_command` with fakes."""

from __future__ import annotations

import pytest

from events import Command, catalog
from tests.catalog_scenarios import CATALOG_SCENARIOS, run_catalog_scenario
from tests.unit.test_command_processor import TickingFakeDriver

COMMAND_TYPES = [e.model for e in catalog.entries() if e.kind == "command"]


def test_every_catalog_command_type_has_a_scenario() -> None:
    assert set(CATALOG_SCENARIOS) == set(COMMAND_TYPES)


@pytest.mark.parametrize("command_type", COMMAND_TYPES, ids=lambda t: t.__name__)
async def test_every_command_type_is_processed_with_fakes(command_type: type[Command]) -> None:
    assert issubclass(command_type, Command)
    await run_catalog_scenario(TickingFakeDriver(), command_type)
