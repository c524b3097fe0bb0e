"""The PostgreSQL unit of work on a real database: inbox, outbox, extra rows, the hold guard.

Everything a unit keeps is written by its commit, in one statement, or nothing is.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select, text

from events import Actor, ActorKind
from events.project import ApprovalPolicy, CreateProject, ProjectCreated
from infra.db.command_status import CommandState, PgCommandStatuses, record_status
from infra.db.outbox import envelope_from_row
from infra.db.pg_uow import PgUnitOfWork
from infra.db.table import Column, Conflict, Table
from infra.db.tables import command_status, consumer_held, inbox, outbox
from infra.db.uow import AlreadyAppliedError, HeldError
from infra.message_context import MessageContext
from infra.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

if TYPE_CHECKING:
    from sqlalchemy import Executable
    from sqlalchemy.ext.asyncio import AsyncEngine

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
POLICY = ApprovalPolicy(approvers=("key:ana",), required_approvals=1)
CONSUMER = "uow_test"
# A projection of the kind a consumer keeps: the latest name per key, and how often it came.
PROJECTION = Table(
    "uow_test_projection",
    (
        Column("key", "uuid", nullable=False, primary_key=True),
        Column("name", "text", nullable=False),
        Column("hits", "int", nullable=False),
    ),
    Conflict(key=("key",), replace=True),
)


class BoomError(Exception):
    pass


@pytest.fixture(scope="module")
async def projection(engine: AsyncEngine) -> Table:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS uow_test_projection"
                " (key uuid PRIMARY KEY, name text NOT NULL, hits int NOT NULL)"
            )
        )
    return PROJECTION


@pytest.fixture
def uow(engine: AsyncEngine) -> PgUnitOfWork:
    return PgUnitOfWork(engine, clock=lambda: NOW)


def _context() -> MessageContext:
    return MessageContext(
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        actor=Actor(kind=ActorKind.USER, id="ana"),
        traceparent=TRACEPARENT,
    )


def _created(project_id: uuid.UUID) -> ProjectCreated:
    return ProjectCreated(project_id=project_id, name="Launch", owner="key:ana", policy=POLICY)


async def _scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def _counts(engine: AsyncEngine, message_id: uuid.UUID, key: uuid.UUID) -> dict[str, int]:
    """The inbox, status, outbox and projection rows a unit for `message_id` left."""
    queries: dict[str, Executable] = {
        "inbox": select(func.count()).where(inbox.c.message_id == message_id),
        "status": select(func.count()).where(command_status.c.command_id == message_id),
        "outbox": select(func.count()).where(outbox.c.causation_id == message_id),
        "projection": text("SELECT count(*) FROM uow_test_projection WHERE key = :key"),
    }
    async with engine.connect() as conn:
        return {
            name: (await conn.execute(query, {"key": key})).scalar_one()
            for name, query in queries.items()
        }


async def _write_all(uow: PgUnitOfWork, message_id: uuid.UUID, key: uuid.UUID) -> list[uuid.UUID]:
    """Claim `message_id`; an event, a command, a status and a projection row for the commit."""
    context = MessageContext(
        correlation_id=uuid.uuid4(), causation_id=message_id, actor=Actor.system()
    )
    assert await uow.inbox.claim(CONSUMER, message_id)
    event_id = await uow.outbox.add_event(
        _created(key), aggregate_id=key, aggregate_version=1, context=context
    )
    command_id = await uow.outbox.add_command(
        CreateProject(project_id=uuid.uuid4(), name="Follow-up", policy=POLICY), context=context
    )
    record_status(
        uow,
        message_id,
        type="CreateProject",
        status=CommandState.PROCESSED,
        result_event_ids=[event_id],
    )
    uow.rows.add(PROJECTION, (key, "Launch", 1))
    return [event_id, command_id]


async def test_commit_writes_inbox_outbox_status_and_extra_rows_together(
    uow: PgUnitOfWork, engine: AsyncEngine, projection: Table
) -> None:
    message_id, key = uuid.uuid4(), uuid.uuid4()
    async with uow:
        ids = await _write_all(uow, message_id, key)
        await uow.commit()
    assert await _counts(engine, message_id, key) == {
        "inbox": 1,
        "status": 1,
        "outbox": 2,
        "projection": 1,
    }
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox).where(outbox.c.id.in_(ids)))).mappings()
        addressed = {row["id"]: (row["exchange"], row["routing_key"]) for row in rows}
    assert addressed == {
        ids[0]: (EVENTS_EXCHANGE, "project.created"),
        ids[1]: (COMMANDS_EXCHANGE, "CreateProject"),
    }


@pytest.mark.parametrize("how", ["exception", "no_commit", "rollback"])
async def test_a_block_that_does_not_commit_writes_nothing(
    uow: PgUnitOfWork, engine: AsyncEngine, projection: Table, how: str
) -> None:
    message_id, key = uuid.uuid4(), uuid.uuid4()
    if how == "exception":
        with pytest.raises(BoomError):  # noqa: PT012  (the block is what is under test)
            async with uow:
                await _write_all(uow, message_id, key)
                raise BoomError
    else:
        async with uow:
            await _write_all(uow, message_id, key)
            if how == "rollback":
                await uow.rollback()
    assert await _counts(engine, message_id, key) == dict.fromkeys(
        ("inbox", "status", "outbox", "projection"), 0
    )


async def test_a_duplicate_claim_fails_the_commit_and_writes_nothing_of_it(
    uow: PgUnitOfWork, engine: AsyncEngine, projection: Table
) -> None:
    message_id, first_key, second_key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with uow:
        await _write_all(uow, message_id, first_key)
        await uow.commit()
    async with uow:
        # Not known yet (the claim is optimistic): the commit finds the inbox row.
        await _write_all(uow, message_id, second_key)
        with pytest.raises(AlreadyAppliedError, match="already applied"):
            await uow.commit()
    assert await _counts(engine, message_id, second_key) == {
        "inbox": 1,
        "status": 1,
        "outbox": 2,  # the first unit's
        "projection": 0,
    }
    async with uow:
        assert await uow.inbox.claim("uow_other_consumer", message_id)
        await uow.commit()  # another consumer applies it on its own


async def test_concurrent_claims_of_one_message_let_exactly_one_through(
    engine: AsyncEngine,
) -> None:
    message_id = uuid.uuid4()

    async def claim() -> str:
        async with PgUnitOfWork(engine) as unit:
            await unit.inbox.claim(CONSUMER, message_id)
            try:
                await unit.commit()
            except AlreadyAppliedError:
                return "duplicate"
            return "applied"

    results = await asyncio.wait_for(asyncio.gather(claim(), claim(), claim()), 10)
    assert sorted(results) == ["applied", "duplicate", "duplicate"]


async def test_extra_rows_follow_their_tables_conflict_rule(
    uow: PgUnitOfWork, engine: AsyncEngine, projection: Table
) -> None:
    key = uuid.uuid4()
    for hits in (1, 2):
        async with uow:
            uow.rows.add(projection, (key, f"name {hits}", hits))
            await uow.commit()
    async with uow:
        uow.rows.add(projection, (key, "kept for nothing", 7))
        uow.rows.add(projection, (key, "the later row of one key wins", 3))
        await uow.commit()
    sql = "SELECT name || ':' || hits FROM uow_test_projection WHERE key = :key"
    assert await _scalar(engine, sql, key=key) == "the later row of one key wins:3"
    async with uow:
        with pytest.raises(ValueError, match="3 values"):
            uow.rows.add(projection, (key, "short"))


async def test_envelope_fields_round_trip_through_the_outbox_row(
    uow: PgUnitOfWork, engine: AsyncEngine
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
    assert (read.actor, read.traceparent, read.occurred_at) == (context.actor, TRACEPARENT, NOW)


async def test_command_status_moves_forward_only(uow: PgUnitOfWork, engine: AsyncEngine) -> None:
    command_id, event_id = uuid.uuid4(), uuid.uuid4()
    outcomes = [
        (CommandState.ACCEPTED, None),
        (CommandState.REJECTED, {"type": "about:blank", "title": "no"}),
        (CommandState.FAILED, {"title": "parked later"}),  # a decided command stays decided
    ]
    for state, problem in outcomes:
        async with uow:
            record_status(
                uow,
                command_id,
                type="CreateProject",
                status=state,
                problem=problem,
                result_event_ids=[event_id],
            )
            await uow.commit()
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        status = await PgCommandStatuses(driver).get(command_id)
        assert await PgCommandStatuses(driver).get(uuid.uuid4()) is None
    assert status is not None
    assert status.status is CommandState.REJECTED
    assert status.problem == {"type": "about:blank", "title": "no"}
    assert status.result_event_ids == (event_id,)


async def _hold(engine: AsyncEngine, key: str, *message_ids: uuid.UUID) -> None:
    async with engine.begin() as conn:
        for message_id in message_ids:
            await conn.execute(
                consumer_held.insert().values(
                    consumer=CONSUMER,
                    partition_key=key,
                    message_id=message_id,
                    parked=message_id == message_ids[0],
                    reason="test",
                    body=b"{}",
                )
            )


async def _held(engine: AsyncEngine, key: str) -> list[uuid.UUID]:
    query = (
        select(consumer_held.c.message_id)
        .where(consumer_held.c.consumer == CONSUMER, consumer_held.c.partition_key == key)
        .order_by(consumer_held.c.seq)
    )
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def _guarded(uow: PgUnitOfWork, key: str, message_id: uuid.UUID) -> None:
    async with uow:
        await uow.inbox.claim(CONSUMER, message_id)
        uow.hold_guard(CONSUMER, key, message_id)
        await uow.commit()


async def test_the_hold_guard_refuses_a_message_behind_a_held_one_and_releases_its_own(
    uow: PgUnitOfWork, engine: AsyncEngine
) -> None:
    key = f"key-{uuid.uuid4()}"
    parked, behind, fresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _hold(engine, key, parked, behind)
    for message_id in (behind, fresh):  # held behind it, or not held but of its partition
        with pytest.raises(HeldError, match="blocked by") as refused:
            await _guarded(uow, key, message_id)
        assert refused.value.blocker == parked
    assert await _held(engine, key) == [parked, behind]
    assert await _scalar(engine, "SELECT count(*) FROM inbox WHERE message_id = :m", m=behind) == 0
    await _guarded(uow, key, parked)  # the head (re-driven): applied, its row released
    assert await _held(engine, key) == [behind]
    await _guarded(uow, key, behind)
    await _guarded(uow, key, fresh)
    assert await _held(engine, key) == []
    await _guarded(uow, f"other-{key}", uuid.uuid4())  # another partition never waited


async def test_the_commit_drains_pending_events_with_the_units_context(
    engine: AsyncEngine,
) -> None:
    from domain.project import Project  # noqa: PLC0415

    project_id, context = uuid.uuid4(), _context()
    async with PgUnitOfWork(engine) as unit:
        unit.aggregates.projects.add(
            Project.create(
                project_id=project_id, name="P", policy=POLICY, by=Actor.system(), at=NOW
            )
        )
        with pytest.raises(RuntimeError, match="context"):
            await unit.commit()
    unit.context = context
    async with unit:
        unit.aggregates.projects.add(
            Project.create(
                project_id=project_id, name="P", policy=POLICY, by=Actor.system(), at=NOW
            )
        )
        await unit.commit()
    sql = "SELECT count(*) FROM outbox WHERE aggregate_id = :p AND causation_id = :c"
    assert await _scalar(engine, sql, p=project_id, c=context.causation_id) == 1
    sql = "SELECT version FROM aggregate_state WHERE aggregate_id = :p"
    assert await _scalar(engine, sql, p=project_id) == 1


async def test_a_unit_inside_a_callers_transaction_is_rolled_back_with_it(
    engine: AsyncEngine, projection: Table
) -> None:
    message_id, key = uuid.uuid4(), uuid.uuid4()
    async with engine.connect() as conn:
        transaction = await conn.begin()
        async with PgUnitOfWork(conn) as unit:
            await _write_all(unit, message_id, key)
            await unit.commit()
        assert (
            await conn.execute(
                text("SELECT count(*) FROM inbox WHERE message_id = :m"), {"m": message_id}
            )
        ).scalar() == 1
        await transaction.rollback()
    assert await _counts(engine, message_id, key) == dict.fromkeys(
        ("inbox", "status", "outbox", "projection"), 0
    )


async def test_the_unit_of_work_refuses_use_outside_its_block(uow: PgUnitOfWork) -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await uow.inbox.claim(CONSUMER, uuid.uuid4())
    async with uow:
        with pytest.raises(RuntimeError, match="already in use"):
            await uow.__aenter__()
        await uow.commit()  # nothing kept: no statement at all
        with pytest.raises(RuntimeError, match="already committed"):
            await uow.commit()
