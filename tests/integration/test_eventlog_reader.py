"""The event-log reader over real PostgreSQL.

Every test writes its rows through the real outbox inside one outer transaction that is
rolled back at the end, and positions them in a random high range: nothing it writes is
ever visible to the relay or to any other test, and its positions cannot collide.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from events import Actor, ActorKind
from events.plan import SubmitPlan
from events.project import ApprovalPolicy, ApprovalPolicyChanged, ProjectCreated
from infra.db.pg_uow import PgUnitOfWork
from infra.db.tables import outbox
from infra.eventlog.reader import EventFilter, EventLogReader
from infra.message_context import MessageContext

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from events import Envelope, Message

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = ApprovalPolicy(approvers=("key:ana",), required_approvals=1)
# Write order -> position order: positions are deliberately not in insertion order.
POSITION_OFFSETS = [3, 1, 7, 2, 6, 4, 5]


@dataclass
class Log:
    """What one test wrote: the reader, its rows by position, and the slice they live in."""

    reader: EventLogReader
    base: int
    by_position: dict[int, Envelope[Message]]
    unpublished: Envelope[Message]
    project_a: uuid.UUID
    correlation: uuid.UUID
    statements: list[str]

    @property
    def mine(self) -> EventFilter:
        return EventFilter(after=self.base, to=self.base + 100)

    def positions(self, items: list[Envelope[Message]]) -> list[int]:
        return [e.position - self.base for e in items if e.position is not None]


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
async def outer(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


@pytest.fixture
async def log(outer: AsyncConnection) -> Log:
    project_a, project_b, correlation = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ana = Actor(kind=ActorKind.USER, id="ana")
    in_a = MessageContext(correlation_id=correlation, actor=ana)
    in_b = MessageContext.start(ana)
    sessions = async_sessionmaker(bind=outer, join_transaction_mode="create_savepoint")
    uow = PgUnitOfWork(outer, clock=_Clock())
    async with uow:
        writes: list[tuple[Any, uuid.UUID, int, MessageContext]] = [
            (
                ProjectCreated(project_id=project_a, name="A", owner="key:ana", policy=POLICY),
                project_a,
                1,
                in_a,
            ),
            (
                ProjectCreated(project_id=project_b, name="B", owner="key:ana", policy=POLICY),
                project_b,
                1,
                in_b,
            ),
            (ApprovalPolicyChanged(project_id=project_a, policy=POLICY), project_a, 2, in_a),
            (ApprovalPolicyChanged(project_id=project_b, policy=POLICY), project_b, 2, in_b),
            (ApprovalPolicyChanged(project_id=project_a, policy=POLICY), project_a, 3, in_a),
            (ApprovalPolicyChanged(project_id=project_b, policy=POLICY), project_b, 3, in_b),
            (ApprovalPolicyChanged(project_id=project_a, policy=POLICY), project_a, 4, in_b),
            (ApprovalPolicyChanged(project_id=project_a, policy=POLICY), project_a, 5, in_a),
        ]
        for data, aggregate_id, version, context in writes:
            await uow.outbox.add_event(
                data, aggregate_id=aggregate_id, aggregate_version=version, context=context
            )
        await uow.commit()
        written = list(uow.outbox.envelopes)
    base = 10**12 + random.randrange(10**6) * 1_000
    by_position: dict[int, Envelope[Message]] = {}
    for envelope, offset in zip(written, POSITION_OFFSETS, strict=False):
        await outer.execute(
            update(outbox)
            .where(outbox.c.id == envelope.id)
            .values(position=base + offset, prev_hash=b"p" * 32, hash=b"h" * 32)
        )
        by_position[base + offset] = envelope.model_copy(update={"position": base + offset})
    statements: list[str] = []
    event.listen(
        outer.sync_connection,
        "before_cursor_execute",
        lambda *args: statements.append(args[2]),
    )
    return Log(
        EventLogReader(sessions), base, by_position, written[-1], project_a, correlation, statements
    )


async def _all(log: Log, where: EventFilter, batch_size: int = 100) -> list[Envelope[Message]]:
    return [e async for e in log.reader.stream(where, batch_size=batch_size)]


async def test_stream_returns_published_rows_in_position_order_intact(log: Log) -> None:
    items = await _all(log, log.mine)
    assert log.positions(items) == [1, 2, 3, 4, 5, 6, 7]
    assert items == [log.by_position[p] for p in sorted(log.by_position)]
    assert log.unpublished.id not in {e.id for e in items}


async def test_stream_fetches_in_keyset_batches_without_offset(log: Log) -> None:
    log.statements.clear()
    items = await _all(log, log.mine, batch_size=2)
    assert log.positions(items) == [1, 2, 3, 4, 5, 6, 7]
    reads = [s for s in log.statements if "FROM outbox" in s]
    assert len(reads) == 4  # 2 + 2 + 2 + 1: the short batch ends the stream
    assert all("LIMIT" in s and "OFFSET" not in s and "position >" in s for s in reads)


async def test_position_range_is_after_exclusive_to_inclusive(log: Log) -> None:
    items = await _all(log, EventFilter(after=log.base + 2, to=log.base + 5))
    assert log.positions(items) == [3, 4, 5]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("aggregate", [3, 5, 6, 7]),
        ("project", [3, 5, 6, 7]),
        ("type", [2, 4, 5, 6, 7]),
        ("correlation", [3, 6, 7]),
        ("time", [1, 2, 7]),
    ],
)
async def test_each_filter_narrows_the_slice(log: Log, field: str, expected: list[int]) -> None:
    filters = {
        "aggregate": EventFilter(aggregate_type="project", aggregate_id=log.project_a),
        "project": EventFilter(project_id=log.project_a),
        "type": EventFilter(types=("ApprovalPolicyChanged",)),
        "correlation": EventFilter(correlation_id=log.correlation),
        # written at START+1min .. START+8min; keep minutes 2..4 (positions 1, 2 and 7)
        "time": EventFilter(since=START + timedelta(minutes=2), until=START + timedelta(minutes=5)),
    }
    where = filters[field]
    narrowed = replace(where, after=log.base, to=log.base + 100)
    assert log.positions(await _all(log, narrowed)) == expected


async def test_pages_chain_through_their_cursors_to_the_end(log: Log) -> None:
    seen: list[int] = []
    cursor: int | None = log.base
    pages = 0
    while cursor is not None:
        page = await log.reader.page(EventFilter(after=cursor, to=log.base + 100), limit=3)
        seen += log.positions(page.items)
        cursor, pages = page.next_after, pages + 1
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert pages == 3


async def test_get_returns_a_published_event_with_its_link_and_not_an_unpublished_one(
    log: Log,
) -> None:
    position = log.base + 4
    found = await log.reader.get(log.by_position[position].id)
    assert found is not None
    assert (found.position, found.hash, found.prev_hash) == (position, b"h" * 32, b"p" * 32)
    assert found.envelope == log.by_position[position]
    assert await log.reader.get(log.unpublished.id) is None


async def test_records_carry_the_chain_links(log: Log) -> None:
    records = [r async for r in log.reader.records(log.mine, batch_size=3)]
    assert [r.position - log.base for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert {r.hash for r in records} == {b"h" * 32}
    assert [r.envelope for r in records] == [log.by_position[p] for p in sorted(log.by_position)]


async def test_bad_sizes_are_refused(log: Log) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        await _all(log, log.mine, batch_size=0)
    with pytest.raises(ValueError, match="limit"):
        await log.reader.page(log.mine, limit=0)


async def test_commands_in_the_log_are_read_only_when_asked_for(
    log: Log, outer: AsyncConnection
) -> None:
    uow = PgUnitOfWork(outer, clock=_Clock())
    async with uow:
        context = MessageContext.start(Actor.system("tests"))
        await uow.outbox.add_command(SubmitPlan(plan_id=uuid.uuid4()), context=context)
        await uow.commit()
        (command,) = uow.outbox.envelopes
    position = log.base + 50
    await outer.execute(
        update(outbox)
        .where(outbox.c.id == command.id)
        .values(position=position, prev_hash=b"p" * 32, hash=b"h" * 32)
    )
    around = EventFilter(after=position - 1, to=position)
    assert await _all(log, around) == []  # an event reader never receives commands
    asked = await _all(log, replace(around, kinds=("command",)))
    assert [e.id for e in asked] == [command.id]
    everything = await _all(log, replace(around, kinds=("event", "command")))
    assert [e.id for e in everything] == [command.id]
