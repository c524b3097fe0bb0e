"""An id another aggregate type holds, on real PostgreSQL: rejected, alone, in a group, in a race.

The event log's unique `(aggregate_id, aggregate_version)` index refuses the new aggregate's
first event; the processor answers `aggregate-id-taken` (infra.db.aggregate_ids) and writes
only the rejection (inbox row and status), never the colliding state or events.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from consumers.command_processor import CONSUMER
from events import catalog
from events.persona import RegisterPersona
from events.plan import DraftPlan, HumanStep
from events.project import ApprovalPolicy, CreateProject
from infra.clock import utc_now
from infra.consumers import Outcome, Runner
from infra.consumers.held import PgHeldMessages
from infra.db.command_status import CommandState
from infra.db.group_commit import GroupCommit
from infra.db.group_load import GroupLoad
from infra.db.people import SqlPeople
from infra.db.pg_uow import PgUnitOfWork
from infra.db.state_tables import aggregate_state
from infra.db.tables import command_status, inbox, outbox
from tests.command_scenarios import command_envelope
from tests.processor_support import command_status as status_of

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message

POLICY = ApprovalPolicy(approvers=("key:a",), required_approvals=1)


async def _decided(
    engine: AsyncEngine,
    envelope: Envelope[Message],
    group: GroupCommit | None = None,
    loads: GroupLoad | None = None,
) -> Outcome:
    """Deliver one command to the processor's runner (its own unit of work), as the broker does."""
    runner = Runner(
        CONSUMER,
        lambda: PgUnitOfWork(engine, group=group, loads=loads),
        held=PgHeldMessages(engine),
        deps={"clock": utc_now, "people": SqlPeople(engine)},
    )
    return await runner.deliver(envelope, catalog.encode(envelope), {})


def _project(project_id: uuid.UUID) -> Envelope[Message]:
    return command_envelope(CreateProject(project_id=project_id, name="P", policy=POLICY))


def _persona(persona_id: uuid.UUID) -> Envelope[Message]:
    return command_envelope(
        RegisterPersona(
            persona_id=persona_id,
            name="Aiko",
            role="writer",
            provider="fake",
            model="fake-1",
            system_prompt="Write well.",
        )
    )


async def _written(engine: AsyncEngine, envelope: Envelope[Message]) -> dict[str, int]:
    queries = {
        "inbox": select(func.count()).where(inbox.c.message_id == envelope.id),
        "status": select(func.count()).where(command_status.c.command_id == envelope.id),
        "outbox": select(func.count()).where(outbox.c.causation_id == envelope.id),
    }
    async with engine.connect() as conn:
        return {name: (await conn.execute(query)).scalar_one() for name, query in queries.items()}


async def _types_holding(engine: AsyncEngine, aggregate_id: uuid.UUID) -> list[str]:
    query = select(aggregate_state.c.aggregate_type).where(
        aggregate_state.c.aggregate_id == aggregate_id
    )
    async with engine.connect() as conn:
        return sorted((await conn.execute(query)).scalars())


async def _warm(engine: AsyncEngine, connections: int) -> None:
    """Leave `connections` idle connections in the pool."""
    async with AsyncExitStack() as stack:
        for _ in range(connections):
            await stack.enter_async_context(engine.connect())


async def test_a_plan_with_a_projects_id_is_rejected_and_only_the_rejection_is_written(
    engine: AsyncEngine,
) -> None:
    project_id = uuid.uuid4()
    assert await _decided(engine, _project(project_id)) is Outcome.APPLIED
    step = HumanStep(step_id=uuid.uuid4(), title="t", assignee="key:a", instructions="do")
    draft = command_envelope(
        DraftPlan(plan_id=project_id, project_id=project_id, title="T", steps=(step,))
    )
    assert await _decided(engine, draft) is Outcome.REJECTED
    status = await status_of(engine, draft.id)
    assert status is not None
    assert status.status is CommandState.REJECTED
    assert status.problem is not None
    assert status.problem["code"] == "aggregate-id-taken"
    assert status.problem["status"] == 409
    assert "a project" in status.problem["detail"]
    assert await _written(engine, draft) == {"inbox": 1, "status": 1, "outbox": 0}
    assert await _types_holding(engine, project_id) == ["project"]
    # Decided once: a redelivery finds the inbox row.
    assert await _decided(engine, draft) is Outcome.DUPLICATE


async def test_in_a_group_only_the_colliding_unit_is_rejected(engine: AsyncEngine) -> None:
    taken = uuid.uuid4()
    assert await _decided(engine, _project(taken)) is Outcome.APPLIED
    group, loads = GroupCommit(), GroupLoad()
    commands = [_project(uuid.uuid4()), _persona(taken), _project(uuid.uuid4())]
    await _warm(engine, len(commands))  # checkouts from idle connections: no I/O between them
    # Their loads go together, so their commits are asked for in the same turn: one group.
    outcomes = await asyncio.gather(*(_decided(engine, c, group, loads) for c in commands))
    assert outcomes == [Outcome.APPLIED, Outcome.REJECTED, Outcome.APPLIED]
    assert loads.grouped == 3
    assert group.statements == 5  # the group, refused; each unit alone; then the rejection
    assert [await _written(engine, c) for c in commands] == [
        {"inbox": 1, "status": 1, "outbox": 1},
        {"inbox": 1, "status": 1, "outbox": 0},
        {"inbox": 1, "status": 1, "outbox": 1},
    ]
    assert await _types_holding(engine, taken) == ["project"]


async def test_rivals_creating_one_id_as_two_types_at_once_get_one_winner(
    engine: AsyncEngine,
) -> None:
    shared = uuid.uuid4()
    project, persona = _project(shared), _persona(shared)
    # Both read "absent" before either writes; the loser's first event waits for the
    # winner's index entry, then is refused.
    outcomes = await asyncio.gather(_decided(engine, project), _decided(engine, persona))
    assert sorted(outcomes) == sorted([Outcome.APPLIED, Outcome.REJECTED])
    won = outcomes[0] is Outcome.APPLIED
    (winner, kind), loser = (
        ((project, "project"), persona) if won else ((persona, "persona"), project)
    )
    assert await _written(engine, winner) == {"inbox": 1, "status": 1, "outbox": 1}
    assert await _written(engine, loser) == {"inbox": 1, "status": 1, "outbox": 0}
    assert await _types_holding(engine, shared) == [kind]
