"""`hisho audit verify` on a relayed log, before and after tampering (in a private database)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import asyncpg
import pytest

from hisho.bootstrap import run_on_app
from infra.eventlog.verify import verify_chain
from infra.settings import PROJECT_ROOT
from producers import relay
from tests.relay_harness import (
    eventually,
    insert_probes,
    log_state,
    private_database,
    probes,
    relay_environment,
    unique_routing_key,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from infra.settings import Settings

EVENTS = 60


@pytest.fixture
async def relayed(settings: Settings) -> AsyncIterator[tuple[Settings, asyncpg.Connection]]:
    """A private log of EVENTS published, chained events; tests may tamper with it."""
    async with private_database(settings) as private:
        connection = await asyncpg.connect(private.database_dsn)
        try:
            await insert_probes(connection, unique_routing_key(), probes(6, EVENTS // 6))
            stop = asyncio.Event()
            task = asyncio.create_task(run_on_app(relay.run, "relay", private, stop))

            async def published() -> bool:
                return (await log_state(connection))[2] == EVENTS

            await eventually(published, timeout=20, what="every event to be published")
            stop.set()
            await asyncio.wait_for(task, 20)
            yield private, connection
        finally:
            await connection.close()


async def audit_verify(settings: Settings, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hisho",
        "audit",
        "verify",
        *args,
        cwd=PROJECT_ROOT,
        env=relay_environment(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def swap_positions(connection: asyncpg.Connection, first: int, second: int) -> None:
    async with connection.transaction():
        await connection.execute("UPDATE outbox SET position = -1 WHERE position = $1", second)
        await connection.execute(
            "UPDATE outbox SET position = $1 WHERE position = $2", second, first
        )
        await connection.execute("UPDATE outbox SET position = $1 WHERE position = -1", first)


async def test_verify_passes_on_an_untouched_log(
    relayed: tuple[Settings, asyncpg.Connection],
) -> None:
    settings, _ = relayed
    code, output = await audit_verify(settings)
    assert (code, output.strip()) == (0, f"chain intact: positions 1..{EVENTS} ({EVENTS} events)")


async def test_verify_names_the_first_broken_position_after_each_kind_of_tampering(
    relayed: tuple[Settings, asyncpg.Connection],
) -> None:
    settings, connection = relayed
    await swap_positions(connection, 40, 45)
    code, output = await audit_verify(settings)
    assert code == 1
    assert "chain broken at position 40:" in output

    await connection.execute("DELETE FROM outbox WHERE position = 30")
    code, output = await audit_verify(settings)
    assert code == 1
    assert "chain broken at position 30: position 30 is missing" in output

    await connection.execute(
        "UPDATE outbox SET data = jsonb_set(data, '{note}', '\"forged\"') WHERE position = 20"
    )
    code, output = await audit_verify(settings)
    assert code == 1
    assert "chain broken at position 20: hash does not match the event's content" in output

    code, output = await audit_verify(settings, "--from", "21", "--to", "29")
    assert (code, output.strip()) == (0, "chain intact: positions 21..29 (9 events)")


async def test_verify_streams_in_pages_and_reports_progress(
    relayed: tuple[Settings, asyncpg.Connection],
) -> None:
    _, connection = relayed
    seen: list[tuple[int, int]] = []
    report = await verify_chain(
        connection, start=5, page_size=7, progress=lambda at, last: seen.append((at, last))
    )
    assert report.ok
    assert (report.start, report.end, report.checked) == (5, EVENTS, EVENTS - 4)
    assert seen[0] == (11, EVENTS)
    assert seen[-1] == (EVENTS, EVENTS)


async def test_a_verify_range_starting_after_a_deleted_event_names_its_start(
    relayed: tuple[Settings, asyncpg.Connection],
) -> None:
    _, connection = relayed
    await connection.execute("DELETE FROM outbox WHERE position = 9")
    report = await verify_chain(connection, start=10)
    assert report.broken is not None
    assert report.broken.position == 10
