"""The workflow consumer's framework scenarios (tests/workflow_scenarios.py) on the fakes.

Their twin on the real broker and database: tests/integration/test_workflow_consumer.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from consumers import workflow
from tests.consumer_scenarios import FakeConsumerDriver, with_failures
from tests.consumer_support import Failures
from tests.workflow_scenarios import SCENARIOS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.consumer_scenarios import ConsumerDriver


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_workflow_consumer_scenario_on_fakes(
    scenario: Callable[[ConsumerDriver], Awaitable[None]],
) -> None:
    failures = Failures()
    await scenario(FakeConsumerDriver(with_failures(workflow.CONSUMER, failures), failures, {}))
