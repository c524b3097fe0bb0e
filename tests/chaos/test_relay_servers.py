"""RabbitMQ stopped and PostgreSQL killed under load, on a private second stack.

Each test names the work in flight when the outage hit: the relays are held (SIGSTOP) until
rows the writer saw committed are unpublished, then the server goes away under them. There
must be some (an outage on an idle relay proves nothing), and every one must arrive.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import pytest

from tests.private_stack import private_stack as own_stack
from tests.relay_harness import eventually
from tests.relay_load import Chaos, run_under_load

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from infra.settings import Settings
    from infra.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def private_stack() -> Iterator[tuple[Stack, Settings]]:
    """RabbitMQ and PostgreSQL of our own (tmp dir, free ports): the suite's stay untouched."""
    with own_stack("hisho-relay-chaos-") as stack_and_settings:
        yield stack_and_settings


async def test_rabbitmq_stopped_and_restarted_under_load_loses_nothing(
    private_stack: tuple[Stack, Settings], tmp_path: Path
) -> None:
    stack, settings = private_stack

    in_flight: set[str] = set()

    async def restart_rabbitmq(chaos: Chaos) -> None:
        in_flight.update(await _hold_relays_with_work_pending(chaos))
        try:
            await asyncio.to_thread(stack.stop_service, "rabbitmq")
        finally:
            _signal_relays(chaos, signal.SIGCONT)
        await chaos.written(500)  # commits pile up in the outbox while the broker is away
        await asyncio.to_thread(stack.start_service, "rabbitmq")

    chaos = await run_under_load(settings, tmp_path, restart_rabbitmq)
    _assert_in_flight_delivered(chaos, in_flight)


async def test_postgresql_killed_and_restarted_under_load_loses_nothing(
    private_stack: tuple[Stack, Settings], tmp_path: Path
) -> None:
    stack, settings = private_stack

    in_flight: set[str] = set()

    async def crash_postgres(chaos: Chaos) -> None:
        in_flight.update(await _hold_relays_with_work_pending(chaos))
        try:
            failures = chaos.writer.failures
            await asyncio.to_thread(stack.kill_service, "postgres")
            await asyncio.sleep(1)  # the outage: writers and relays all lose their sessions
            await asyncio.to_thread(stack.start_service, "postgres")
        finally:
            _signal_relays(chaos, signal.SIGCONT)
        assert chaos.writer.failures > failures

    chaos = await run_under_load(settings, tmp_path, crash_postgres)
    _assert_in_flight_delivered(chaos, in_flight)


async def _hold_relays_with_work_pending(chaos: Chaos) -> set[str]:
    """Freeze the relays (SIGSTOP) until some rows the writer saw committed are unpublished.

    The outage then lands on exactly that work in flight (returned); the caller resumes the
    relays (SIGCONT). An outage on a relay that had caught up would prove nothing.
    """
    _signal_relays(chaos, signal.SIGSTOP)
    caught: set[str] = set()

    async def some_pending() -> bool:
        caught.update(chaos.acknowledged_ids() & await chaos.pending())
        return bool(caught)

    try:
        await eventually(some_pending, timeout=30, what="committed rows left unpublished")
    except BaseException:
        _signal_relays(chaos, signal.SIGCONT)
        raise
    return caught


def _signal_relays(chaos: Chaos, signum: signal.Signals) -> None:
    for relay in chaos.relays:
        if relay.process.poll() is None:
            os.kill(relay.pid, signum)


def _assert_in_flight_delivered(chaos: Chaos, in_flight: set[str]) -> None:
    """Work was in flight at the outage, and every piece of it was logged and arrived."""
    assert in_flight, "the outage met no committed event still unpublished"
    assert in_flight <= chaos.log.keys()
    assert in_flight <= chaos.delivered
