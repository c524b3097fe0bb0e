"""The workflow consumer's framework scenarios (tests/workflow_scenarios.py) on the fakes.

Their twin on the real broker and database: tests/integration/test_workflow_consumer.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.workflow_scenarios import SCENARIOS, FakeBackend

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.workflow_scenarios import Backend


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_workflow_consumer_scenario_on_fakes(
    scenario: Callable[[Backend], Awaitable[None]],
) -> None:
    await scenario(FakeBackend())
