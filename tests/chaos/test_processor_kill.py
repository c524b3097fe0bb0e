"""kill -9 of the command processor while commands flow over HTTP, then a restart: every
command the ingress answered 202 ends processed or rejected, none lost, none applied twice.

Commands: `CreateProject` for fresh ids (must end `processed` with exactly one event) mixed
with `SubmitPlan` for unknown plans (must end `rejected` with none). A command applied twice
would show as a second event or as a `processed` command turned `rejected` (project exists).

The kill lands while work is in flight, and the test knows which: the processor is frozen
(SIGSTOP) until commands answered 202 are found without a final status, then killed while
still frozen. There must be some (a kill of an idle processor proves nothing), and each of
them must end as expected with its events written once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select

from infra.db.tables import command_status, outbox
from tests.components_support import component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli
from tests.processor_support import backlog_worked_off, eventually

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings
    from tests.components_support import Components

COMMANDS = 300
CONCURRENCY = 16
KILL_AFTER, RESTART_AFTER = 80, 160  # accepted commands before the kill, before the restart
FREEZE_DEADLINE = 30.0


class Flow:
    """Posts the commands and remembers what each 202 promised."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers
        self.expected: dict[uuid.UUID, str] = {}  # command id -> processed | rejected
        self.accepted = asyncio.Condition()

    async def post(self, n: int) -> None:
        body: dict[str, Any]
        if n % 4 == 3:
            command, body, outcome = "SubmitPlan", {"plan_id": str(uuid.uuid4())}, "rejected"
        else:
            policy = {"approvers": ["key:alice"], "required_approvals": 1}
            body = {"project_id": str(uuid.uuid4()), "name": f"p{n}", "policy": policy}
            command, outcome = "CreateProject", "processed"
        answer = await self.http.post(f"/v1/commands/{command}", json=body, headers=self.headers)
        assert answer.status_code == 202, answer.text
        async with self.accepted:
            self.expected[uuid.UUID(answer.json()["command_id"])] = outcome
            self.accepted.notify_all()

    async def when_accepted(self, count: int) -> None:
        async with self.accepted:
            await self.accepted.wait_for(lambda: len(self.expected) >= count)


async def kill_and_restart(flow: Flow, run: Components, engine: AsyncEngine) -> set[uuid.UUID]:
    """Kill -9 the processor with work in flight, restart it later; return that work."""
    await flow.when_accepted(KILL_AFTER)
    in_flight = await freeze_with_work_in_flight(flow, run.processes["processor"].pid, engine)
    await asyncio.to_thread(run.kill, "processor")
    await flow.when_accepted(RESTART_AFTER)
    await asyncio.to_thread(run.start, "processor")
    return in_flight


async def freeze_with_work_in_flight(flow: Flow, pid: int, engine: AsyncEngine) -> set[uuid.UUID]:
    """SIGSTOP the processor at a moment some 202'd commands are unfinished; return them.

    Frozen, the processor finishes nothing more (it is the only one), so the commands seen
    unfinished are exactly those still to do when the kill lands.
    """
    deadline = time.monotonic() + FREEZE_DEADLINE
    while True:
        os.kill(pid, signal.SIGSTOP)
        accepted = list(flow.expected)
        unfinished = set(accepted) - await finished(engine, accepted)
        if unfinished:
            return unfinished
        os.kill(pid, signal.SIGCONT)
        if time.monotonic() > deadline:
            raise AssertionError(f"no accepted command in flight within {FREEZE_DEADLINE}s")
        await asyncio.sleep(0.005)


async def finished(engine: AsyncEngine, command_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The commands among `command_ids` with a final status."""
    query = select(command_status.c.command_id).where(
        command_status.c.command_id.in_(command_ids), command_status.c.status != "accepted"
    )
    async with engine.connect() as conn:
        return set((await conn.execute(query)).scalars().all())


async def test_processor_killed_mid_flow_loses_nothing_and_applies_nothing_twice(
    settings: Settings,
    engine: AsyncEngine,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    port = free_port()
    env = component_env(settings, HISHO_INGRESS_PORT=str(port))
    hisho_cli(env, "migrate")
    _, token = cli_key(env, "commands:write")
    with components(env, tmp_path, ("processor", "ingress")) as run:
        await backlog_worked_off(settings)  # other tests' leftovers, before ours
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            flow = Flow(http, {"Authorization": f"Bearer {token}"})
            gate = asyncio.Semaphore(CONCURRENCY)

            async def bounded(n: int) -> None:
                async with gate:
                    await flow.post(n)

            chaos = asyncio.create_task(kill_and_restart(flow, run, engine))
            await asyncio.gather(*(bounded(n) for n in range(COMMANDS)))
            in_flight = await chaos
        outcomes = await eventually(lambda: final_outcomes(engine, flow.expected), 60.0)
        assert run.stop("processor") == 0
    record_property("in_flight_at_kill", len(in_flight))
    assert in_flight, "the kill met no command in flight"
    assert outcomes == flow.expected
    counts = await event_counts(engine, list(flow.expected))
    wanted = {cid: int(outcome == "processed") for cid, outcome in flow.expected.items()}
    assert {cid: counts.get(cid, 0) for cid in flow.expected} == wanted
    # Spelled out for the commands the kill interrupted: done as promised, and once.
    interrupted = {cid: (outcomes[cid], counts.get(cid, 0)) for cid in in_flight}
    assert interrupted == {cid: (flow.expected[cid], wanted[cid]) for cid in in_flight}


async def final_outcomes(
    engine: AsyncEngine, expected: dict[uuid.UUID, str]
) -> dict[uuid.UUID, str]:
    query = select(command_status.c.command_id, command_status.c.status).where(
        command_status.c.command_id.in_(list(expected))
    )
    async with engine.connect() as conn:
        found: dict[uuid.UUID, Any] = dict((await conn.execute(query)).tuples().all())
    missing = len(expected) - len(found)
    assert missing == 0, f"{missing} commands not answered yet"
    return {cid: str(status) for cid, status in found.items()}


async def event_counts(engine: AsyncEngine, command_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    query = (
        select(outbox.c.causation_id, func.count())
        .where(outbox.c.causation_id.in_(command_ids))
        .group_by(outbox.c.causation_id)
    )
    async with engine.connect() as conn:
        return {cid: int(n) for cid, n in (await conn.execute(query)).tuples().all()}
