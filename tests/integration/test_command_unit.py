"""`PgUnitOfWork` with aggregates on real PostgreSQL: one statement writes all of it, or none.

Each race here lets two units read the same thing, commits one, and shows the other's
statement raises `ConcurrencyError` (or `AlreadyAppliedError`) and leaves no row of its own
behind; then group commit and group load, the optional strategies behind the same methods.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy import func, select

from domain.plan import Plan
from domain.project import Project
from events.project import ApprovalPolicy, ChangeApprovalPolicy, CreateProject
from infra.db.aggregate_ids import AggregateIdTakenError
from infra.db.command_status import CommandState, record_status
from infra.db.group_commit import GroupCommit
from infra.db.group_load import GroupLoad
from infra.db.pg_uow import PgUnitOfWork
from infra.db.state_tables import aggregate_state
from infra.db.tables import command_status, consumer_held, inbox, outbox
from infra.db.uow import AlreadyAppliedError, ConcurrencyError, HeldError
from infra.message_context import MessageContext
from infra.topology import COMMAND_PROCESSOR
from tests.command_scenarios import command_envelope

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message
    from infra.settings import Settings


def _policy(*approvers: str) -> ApprovalPolicy:
    return ApprovalPolicy(approvers=tuple(f"key:{a}" for a in approvers), required_approvals=1)


async def _written(engine: AsyncEngine, envelope: Envelope[Message]) -> dict[str, int]:
    """How many inbox, status and outbox rows the command `envelope` left."""
    queries = {
        "inbox": select(func.count()).where(inbox.c.message_id == envelope.id),
        "status": select(func.count()).where(command_status.c.command_id == envelope.id),
        "outbox": select(func.count()).where(outbox.c.causation_id == envelope.id),
    }
    async with engine.connect() as conn:
        return {name: (await conn.execute(query)).scalar_one() for name, query in queries.items()}


async def _project(engine: AsyncEngine, project_id: uuid.UUID) -> tuple[int, list[str]]:
    query = select(aggregate_state.c.version, aggregate_state.c.state).where(
        aggregate_state.c.aggregate_type == "project",
        aggregate_state.c.aggregate_id == project_id,
    )
    async with engine.connect() as conn:
        version, state = (await conn.execute(query)).one()
    return version, state["policy"]["approvers"]


async def _create(unit: PgUnitOfWork, envelope: Envelope[Message]) -> None:
    """Claim a `CreateProject` and create its project, for the commit (events drained then)."""
    assert await unit.inbox.claim(COMMAND_PROCESSOR, envelope.id)
    data = envelope.data
    assert isinstance(data, CreateProject)
    await unit.aggregates.projects.require_absent(data.project_id)
    unit.aggregates.projects.add(
        Project.create(
            project_id=data.project_id,
            name=data.name,
            policy=data.policy,
            by=envelope.actor,
            at=envelope.occurred_at,
        )
    )
    unit.context = MessageContext.caused_by(envelope)


async def _created(engine: AsyncEngine) -> uuid.UUID:
    project_id = uuid.uuid4()
    envelope = command_envelope(CreateProject(project_id=project_id, name="P", policy=_policy("a")))
    async with PgUnitOfWork(engine) as unit:
        await _create(unit, envelope)
        await unit.commit()
    return project_id


async def _decide(unit: PgUnitOfWork, envelope: Envelope[Message]) -> None:
    """What the processor does before its commit, with a policy change as the decision."""
    assert await unit.inbox.claim(COMMAND_PROCESSOR, envelope.id)
    data = envelope.data
    assert isinstance(data, ChangeApprovalPolicy)
    project = await unit.aggregates.projects.require(data.project_id)
    project.change_policy(data.policy, by=envelope.actor, at=envelope.occurred_at)
    ids = await unit.save_aggregates(MessageContext.caused_by(envelope))
    record_status(
        unit, envelope.id, type=envelope.type, status=CommandState.PROCESSED, result_event_ids=ids
    )


def _change(project_id: uuid.UUID, *approvers: str) -> Envelope[Message]:
    return command_envelope(ChangeApprovalPolicy(project_id=project_id, policy=_policy(*approvers)))


async def test_a_commit_writes_claim_state_events_and_status_together(engine: AsyncEngine) -> None:
    project_id = await _created(engine)
    change = _change(project_id, "b")
    async with PgUnitOfWork(engine) as unit:
        await _decide(unit, change)
        await unit.commit()
    assert await _written(engine, change) == {"inbox": 1, "status": 1, "outbox": 1}
    assert await _project(engine, project_id) == (2, ["key:b"])


async def test_a_stale_update_writes_nothing_of_its_command(engine: AsyncEngine) -> None:
    project_id = await _created(engine)
    mine, theirs = _change(project_id, "b"), _change(project_id, "c")
    async with PgUnitOfWork(engine) as first, PgUnitOfWork(engine) as second:
        await _decide(first, mine)
        await _decide(second, theirs)  # read version 1 too
        await first.commit()
        with pytest.raises(ConcurrencyError, match="stale write: 0 of 1 rows"):
            await second.commit()
    assert await _project(engine, project_id) == (2, ["key:b"])
    assert await _written(engine, theirs) == {"inbox": 0, "status": 0, "outbox": 0}


async def test_creating_a_taken_id_writes_nothing_of_its_command(engine: AsyncEngine) -> None:
    project_id = uuid.uuid4()
    mine = command_envelope(CreateProject(project_id=project_id, name="A", policy=_policy("a")))
    theirs = command_envelope(CreateProject(project_id=project_id, name="B", policy=_policy("b")))
    first, second = PgUnitOfWork(engine), PgUnitOfWork(engine)
    async with first, second:
        # Both read "no such project" before either writes; the handler then creates it.
        await _create(first, mine)
        await _create(second, theirs)
        await first.commit()
        with pytest.raises(ConcurrencyError):
            await second.commit()
    assert await _project(engine, project_id) == (1, ["key:a"])
    assert await _written(engine, theirs) == {"inbox": 0, "status": 0, "outbox": 0}


async def test_one_command_delivered_twice_at_once_is_applied_once(engine: AsyncEngine) -> None:
    project_id = await _created(engine)
    change = _change(project_id, "b")
    async with PgUnitOfWork(engine) as first, PgUnitOfWork(engine) as second:
        await _decide(first, change)
        await _decide(second, change)  # the other copy, decided at the same time
        await first.commit()
        with pytest.raises(AlreadyAppliedError, match="already applied"):
            await second.commit()
    assert await _written(engine, change) == {"inbox": 1, "status": 1, "outbox": 1}
    # A later redelivery is decided again (now a rejection: the policy is unchanged), but its
    # commit finds the claim: a duplicate.
    async with PgUnitOfWork(engine) as again:
        assert await again.inbox.claim(COMMAND_PROCESSOR, change.id)
        record_status(again, change.id, type=change.type, status=CommandState.REJECTED)
        with pytest.raises(AlreadyAppliedError):
            await again.commit()
    assert await _written(engine, change) == {"inbox": 1, "status": 1, "outbox": 1}
    assert await _project(engine, project_id) == (2, ["key:b"])


async def test_leaving_without_commit_writes_nothing(engine: AsyncEngine) -> None:
    project_id = await _created(engine)
    change = _change(project_id, "b")
    async with PgUnitOfWork(engine) as unit:
        await _decide(unit, change)
    assert await _written(engine, change) == {"inbox": 0, "status": 0, "outbox": 0}
    assert await _project(engine, project_id) == (1, ["key:a"])


async def test_units_ready_together_commit_in_one_statement(engine: AsyncEngine) -> None:
    group = GroupCommit()
    projects = [await _created(engine) for _ in range(3)]
    changes = [_change(project_id, "b") for project_id in projects]
    units = [PgUnitOfWork(engine, group=group) for _ in changes]
    async with AsyncExitStack() as stack:
        for unit, change in zip(units, changes, strict=True):
            await stack.enter_async_context(unit)
            await _decide(unit, change)
        await asyncio.gather(*(unit.commit() for unit in units))
    assert (group.statements, group.grouped) == (1, 3)
    for project_id, change in zip(projects, changes, strict=True):
        assert await _written(engine, change) == {"inbox": 1, "status": 1, "outbox": 1}
        assert await _project(engine, project_id) == (2, ["key:b"])


async def test_a_group_spoiled_by_one_unit_commits_each_on_its_own(engine: AsyncEngine) -> None:
    group = GroupCommit()
    raced, other = await _created(engine), await _created(engine)
    mine, theirs, fine = _change(raced, "b"), _change(raced, "c"), _change(other, "d")
    first, second, third = (PgUnitOfWork(engine, group=group) for _ in range(3))
    async with first, second, third:
        for unit, change in ((first, mine), (second, theirs), (third, fine)):
            await _decide(unit, change)  # `mine` and `theirs` both read version 1
        outcomes = await asyncio.gather(
            first.commit(), second.commit(), third.commit(), return_exceptions=True
        )
    assert group.statements == 4  # the group, refused; then each unit alone
    assert outcomes[0] is None
    assert isinstance(outcomes[1], ConcurrencyError)
    assert outcomes[2] is None
    assert await _project(engine, raced) == (2, ["key:b"])
    assert await _project(engine, other) == (2, ["key:d"])
    assert await _written(engine, theirs) == {"inbox": 0, "status": 0, "outbox": 0}


async def test_one_command_twice_in_a_group_is_applied_once(engine: AsyncEngine) -> None:
    group = GroupCommit()
    project_id = await _created(engine)
    change = _change(project_id, "b")
    first, second = (PgUnitOfWork(engine, group=group) for _ in range(2))
    async with first, second:
        await _decide(first, change)
        await _decide(second, change)
        outcomes = await asyncio.gather(first.commit(), second.commit(), return_exceptions=True)
    assert outcomes[0] is None
    assert isinstance(outcomes[1], AlreadyAppliedError | ConcurrencyError)
    assert await _written(engine, change) == {"inbox": 1, "status": 1, "outbox": 1}
    assert await _project(engine, project_id) == (2, ["key:b"])


async def test_units_loading_together_read_with_one_statement(engine: AsyncEngine) -> None:
    loads, group = GroupLoad(), GroupCommit()
    projects = [await _created(engine) for _ in range(2)]
    changes = [_change(projects[0], "b"), _change(projects[1], "c"), _change(projects[0], "d")]
    units = [PgUnitOfWork(engine, group=group, loads=loads) for _ in changes]
    async with AsyncExitStack() as stack:
        for unit in units:
            await stack.enter_async_context(unit)
        # All three ask in the same turn; two of them for the same project.
        await asyncio.gather(*(_decide(u, c) for u, c in zip(units, changes, strict=True)))
        assert (loads.statements, loads.grouped) == (1, 3)
        outcomes = await asyncio.gather(*(u.commit() for u in units), return_exceptions=True)
    assert outcomes[:2] == [None, None]
    assert isinstance(outcomes[2], ConcurrencyError)  # read version 1 too; the first won
    assert await _project(engine, projects[0]) == (2, ["key:b"])
    assert await _project(engine, projects[1]) == (2, ["key:c"])


async def test_a_group_load_answers_none_for_a_missing_aggregate(
    engine: AsyncEngine, settings: Settings
) -> None:
    loads = GroupLoad()
    existing = await _created(engine)
    connection = await asyncpg.connect(settings.database_dsn)
    try:
        found, missing = await asyncio.gather(
            loads.load(connection, "project", existing),
            loads.load(connection, "project", uuid.uuid4()),
        )
        alone = await loads.load(connection, "project", existing)
    finally:
        await connection.close()
    assert loads.grouped == 2
    assert found is not None
    assert found[0] == 1
    assert missing is None
    assert alone == found
    assert loads.statements == 2


async def test_a_lost_connection_fails_every_load_of_its_group(settings: Settings) -> None:
    loads = GroupLoad()
    lost = await asyncpg.connect(settings.database_dsn)
    other = await asyncpg.connect(settings.database_dsn)
    lost.terminate()
    try:
        outcomes = await asyncio.gather(
            loads.load(lost, "project", uuid.uuid4()),
            loads.load(other, "project", uuid.uuid4()),
            return_exceptions=True,
        )
    finally:
        await other.close()
    assert all(isinstance(outcome, asyncpg.InterfaceError) for outcome in outcomes)


async def test_a_group_of_units_writing_different_tables_commits_in_one_statement(
    engine: AsyncEngine,
) -> None:
    group = GroupCommit()
    project_id = await _created(engine)
    change = _change(project_id, "b")
    create = command_envelope(CreateProject(project_id=uuid.uuid4(), name="N", policy=_policy("a")))
    parked = uuid.uuid4()
    changing, creating, status_only, empty = (PgUnitOfWork(engine, group=group) for _ in range(4))
    async with changing, creating, status_only, empty:
        await _decide(changing, change)  # inbox, changed state, outbox, status
        await _create(creating, create)  # inbox, created state, outbox (drained at commit)
        record_status(status_only, parked, type="CreateProject", status=CommandState.FAILED)
        await asyncio.gather(
            changing.commit(), creating.commit(), status_only.commit(), empty.commit()
        )
    assert (group.statements, group.grouped) == (1, 3)  # nothing to write: no statement
    assert await _written(engine, change) == {"inbox": 1, "status": 1, "outbox": 1}
    assert await _written(engine, create) == {"inbox": 1, "status": 0, "outbox": 1}
    assert await _project(engine, project_id) == (2, ["key:b"])
    query = select(command_status.c.status).where(command_status.c.command_id == parked)
    async with engine.connect() as conn:
        assert (await conn.execute(query)).scalar_one() == "failed"


async def test_a_new_aggregate_with_another_types_id_is_refused_and_writes_nothing(
    engine: AsyncEngine,
) -> None:
    project_id = await _created(engine)
    draft = command_envelope(CreateProject(project_id=uuid.uuid4(), name="X", policy=_policy("a")))
    async with PgUnitOfWork(engine, context=MessageContext.caused_by(draft)) as unit:
        assert await unit.inbox.claim(COMMAND_PROCESSOR, draft.id)
        unit.aggregates.plans.add(
            Plan.draft(
                plan_id=project_id, project_id=project_id, title="T", steps=(), at=draft.occurred_at
            )
        )
        with pytest.raises(AggregateIdTakenError) as refused:
            await unit.commit()
    assert (refused.value.aggregate_type, refused.value.holder) == ("plan", "project")
    assert await _written(engine, draft) == {"inbox": 0, "status": 0, "outbox": 0}


async def test_a_held_unit_in_a_group_waits_while_the_others_commit(engine: AsyncEngine) -> None:
    group = GroupCommit()
    key, blocker, waiting = f"key-{uuid.uuid4()}", uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            consumer_held.insert().values(
                consumer=COMMAND_PROCESSOR,
                partition_key=key,
                message_id=blocker,
                parked=True,
                reason="test",
                body=b"{}",
            )
        )
    project_id = await _created(engine)
    change = _change(project_id, "b")
    held, free = PgUnitOfWork(engine, group=group), PgUnitOfWork(engine, group=group)
    async with held, free:
        assert await held.inbox.claim(COMMAND_PROCESSOR, waiting)
        held.hold_guard(COMMAND_PROCESSOR, key, waiting)
        await _decide(free, change)
        outcomes = await asyncio.gather(held.commit(), free.commit(), return_exceptions=True)
    assert group.statements == 3  # the group, refused; then each unit alone
    assert isinstance(outcomes[0], HeldError)
    assert outcomes[0].blocker == blocker
    assert outcomes[1] is None
    assert await _written(engine, change) == {"inbox": 1, "status": 1, "outbox": 1}
    query = select(func.count()).where(inbox.c.message_id == waiting)
    async with engine.connect() as conn:
        assert (await conn.execute(query)).scalar_one() == 0
