"""The SQL unit of work on real PostgreSQL: one transaction, or nothing at all."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from events import Actor, ActorKind
from events.project import ApprovalPolicy, CreateProject, ProjectCreated
from infra.db.command_status import CommandState
from infra.db.engine import create_session_factory
from infra.db.outbox import envelope_from_row
from infra.db.tables import command_status, inbox, outbox
from infra.db.uow import SqlUnitOfWork
from infra.message_context import MessageContext
from infra.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
POLICY = ApprovalPolicy(approvers=("ana",), required_approvals=1)


class BoomError(Exception):
    pass


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest.fixture
def uow(sessions: async_sessionmaker[AsyncSession]) -> SqlUnitOfWork:
    return SqlUnitOfWork(sessions, clock=lambda: NOW)


def _context() -> MessageContext:
    return MessageContext(
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        actor=Actor(kind=ActorKind.USER, id="ana"),
        traceparent=TRACEPARENT,
    )


def _created(project_id: uuid.UUID) -> ProjectCreated:
    return ProjectCreated(project_id=project_id, name="Launch", policy=POLICY)


async def _count(engine: AsyncEngine, table: str, column: str, value: uuid.UUID) -> int:
    tables = {"outbox": outbox, "inbox": inbox, "command_status": command_status}
    target = tables[table]
    async with engine.connect() as conn:
        query = select(func.count()).select_from(target).where(target.c[column] == value)
        return int((await conn.execute(query)).scalar_one())


async def _write_all(uow: SqlUnitOfWork, command_id: uuid.UUID, project_id: uuid.UUID) -> None:
    context = _context()
    assert await uow.inbox.claim("uow_test", command_id)
    event_id = await uow.outbox.add_event(
        _created(project_id), aggregate_id=project_id, aggregate_version=1, context=context
    )
    await uow.outbox.add_command(
        CreateProject(project_id=uuid.uuid4(), name="Follow-up", policy=POLICY), context=context
    )
    await uow.command_status.record(
        command_id,
        type="CreateProject",
        status=CommandState.PROCESSED,
        result_event_ids=[event_id],
        correlation_id=context.correlation_id,
        actor=context.actor,
    )


async def test_commit_writes_inbox_outbox_and_status_together(
    uow: SqlUnitOfWork, engine: AsyncEngine
) -> None:
    command_id, project_id = uuid.uuid4(), uuid.uuid4()
    async with uow:
        await _write_all(uow, command_id, project_id)
        await uow.commit()
        envelopes = list(uow.outbox.envelopes)
    assert await _count(engine, "inbox", "message_id", command_id) == 1
    assert await _count(engine, "command_status", "command_id", command_id) == 1
    correlation = envelopes[0].correlation_id
    assert await _count(engine, "outbox", "correlation_id", correlation) == 2
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(outbox).where(outbox.c.correlation_id == correlation))
        ).mappings()
        addressed = {row["id"]: (row["exchange"], row["routing_key"]) for row in rows}
    assert addressed == {
        envelopes[0].id: (EVENTS_EXCHANGE, "project.created"),
        envelopes[1].id: (COMMANDS_EXCHANGE, "CreateProject"),
    }


@pytest.mark.parametrize("how", ["exception", "no_commit"])
async def test_a_block_that_does_not_commit_writes_nothing(
    uow: SqlUnitOfWork, engine: AsyncEngine, how: str
) -> None:
    command_id, project_id = uuid.uuid4(), uuid.uuid4()
    if how == "exception":
        with pytest.raises(BoomError):  # noqa: PT012  (the block is what is under test)
            async with uow:
                await _write_all(uow, command_id, project_id)
                raise BoomError
    else:
        async with uow:
            await _write_all(uow, command_id, project_id)
    assert await _count(engine, "inbox", "message_id", command_id) == 0
    assert await _count(engine, "command_status", "command_id", command_id) == 0
    assert await _count(engine, "outbox", "aggregate_id", project_id) == 0


async def test_a_redelivered_message_is_claimed_only_once(uow: SqlUnitOfWork) -> None:
    message_id = uuid.uuid4()
    async with uow:
        assert await uow.inbox.claim("uow_test", message_id)
        await uow.commit()
    async with uow:
        assert not await uow.inbox.claim("uow_test", message_id)
        assert await uow.inbox.claim("uow_other_consumer", message_id)
        await uow.commit()


async def test_concurrent_claims_of_one_message_let_exactly_one_through(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    message_id = uuid.uuid4()

    async def claim() -> bool:
        async with SqlUnitOfWork(sessions) as unit:
            claimed = await unit.inbox.claim("uow_test", message_id)
            await unit.commit()
            return claimed

    results = await asyncio.wait_for(asyncio.gather(claim(), claim(), claim()), 10)
    assert sorted(results) == [False, False, True]


async def test_envelope_fields_round_trip_through_the_outbox_row(
    uow: SqlUnitOfWork, engine: AsyncEngine
) -> None:
    project_id, context = uuid.uuid4(), _context()
    async with uow:
        await uow.outbox.add_event(
            _created(project_id), aggregate_id=project_id, aggregate_version=3, context=context
        )
        await uow.commit()
        [written] = uow.outbox.envelopes
    async with engine.connect() as conn:
        row = (await conn.execute(select(outbox).where(outbox.c.id == written.id))).mappings().one()
    read = envelope_from_row(row)
    assert read == written
    assert (read.correlation_id, read.causation_id) == (
        context.correlation_id,
        context.causation_id,
    )
    assert (read.actor, read.traceparent, read.occurred_at) == (context.actor, TRACEPARENT, NOW)
    assert (read.aggregate_type, read.aggregate_id, read.aggregate_version) == (
        "project",
        project_id,
        3,
    )


async def test_the_same_aggregate_version_cannot_be_recorded_twice(uow: SqlUnitOfWork) -> None:
    project_id, context = uuid.uuid4(), _context()
    with pytest.raises(IntegrityError):  # noqa: PT012
        async with uow:
            for _ in range(2):
                await uow.outbox.add_event(
                    _created(project_id),
                    aggregate_id=project_id,
                    aggregate_version=1,
                    context=context,
                )


async def test_command_status_upsert_replaces_the_outcome(uow: SqlUnitOfWork) -> None:
    command_id, event_id = uuid.uuid4(), uuid.uuid4()
    async with uow:
        await uow.command_status.record(
            command_id, type="CreateProject", status=CommandState.ACCEPTED
        )
        await uow.commit()
    async with uow:
        await uow.command_status.record(
            command_id,
            type="CreateProject",
            status=CommandState.REJECTED,
            problem={"type": "about:blank", "title": "no"},
            result_event_ids=[event_id],
        )
        await uow.commit()
    async with uow:
        status = await uow.command_status.get(command_id)
        assert await uow.command_status.get(uuid.uuid4()) is None
    assert status is not None
    assert status.status is CommandState.REJECTED
    assert status.problem == {"type": "about:blank", "title": "no"}
    assert status.result_event_ids == (event_id,)


async def test_the_unit_of_work_refuses_use_outside_its_block(uow: SqlUnitOfWork) -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await uow.inbox.claim("uow_test", uuid.uuid4())
    async with uow:
        with pytest.raises(RuntimeError, match="already in use"):
            await uow.__aenter__()


class _WithRepository(SqlUnitOfWork):
    """How the command processor attaches repositories: bound to the block's session."""

    def attach_repositories(self, session: AsyncSession) -> None:
        self.repository_session = session


async def test_repositories_attached_by_a_subclass_share_the_transaction(
    sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    message_id = uuid.uuid4()
    uow = _WithRepository(sessions)
    async with uow:
        assert uow.repository_session is uow.session
        await uow.repository_session.execute(
            inbox.insert().values(consumer="uow_repo_test", message_id=message_id)
        )
        assert not await uow.inbox.claim("uow_repo_test", message_id)
    assert await _count(engine, "inbox", "message_id", message_id) == 0
