"""The command processor's unit of work: reads as they come, every write in ONE statement.

A command costs the processor one read per aggregate it loads and one statement that writes
everything it decided: the inbox row, the new and changed aggregate states, the outbox rows
and the command status. PostgreSQL runs a single statement as its own
transaction, so that statement is the unit's commit: all of it is durable, or none of it. No
BEGIN and no COMMIT round trips; nothing is held open while the domain decides.

The reads are optimistic, and so is the inbox claim; the statement checks them:

- the inbox row is inserted `ON CONFLICT DO NOTHING`: a copy of the same command applied
  before (a redelivery, a second publish) or concurrently leaves it out;
- a new aggregate is inserted `ON CONFLICT DO NOTHING`: one created meanwhile leaves it out;
- a loaded aggregate is updated `WHERE version = <the version read>`: one changed meanwhile
  (READ COMMITTED re-checks the row a concurrent writer committed) leaves it out.

`hisho_expect_written` (migration 0004) compares what was written with what was meant to be
and raises if a row was left out, so the whole statement rolls back: a missing inbox row
(`HS208`) makes the unit raise `AlreadyAppliedError` (a duplicate: acknowledge it), a missing
state row (`HS409`) `ConcurrencyError` (the runtime retries the command with a fresh unit,
whose reads see the winner's state). The domain decides a duplicate once more before its
commit finds out; it only reads, and nothing of that decision is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import asyncpg

from infra.clock import Clock, utc_now
from infra.db.aggregate_ids import is_id_taken, taken_error
from infra.db.command_status import (
    GET_SQL,
    ON_CONFLICT_REPLACE,
    STATUS_COLUMNS,
    CommandState,
    status_from_row,
)
from infra.db.inbox import AlreadyAppliedError
from infra.db.prepared import OUTBOX_COLUMNS, PreparedOutbox, outbox_rows_sql
from infra.db.repositories import LOAD_SQL, Aggregates, ConcurrencyError

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from types import TracebackType

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from events import Actor
    from infra.db.command_status import CommandStatus
    from infra.db.group_commit import GroupCommit
    from infra.db.group_load import GroupLoad
    from infra.db.uow import CommandStatuses, Outbox

# Raised by hisho_expect_written (migration 0004).
APPLIED_SQLSTATE = "HS208"
STALE_SQLSTATE = "HS409"
# Every parameter is an array, so one statement can carry several units (group commit):
# $1-$2 inbox claims, $3-$6 created states, $7-$11 changed states, $12-$25 outbox rows,
# $26-$33 command statuses (result event ids as array literals), $34 inbox rows and $35 state
# rows expected.
COMMIT_SQL = (
    "WITH claimed AS (INSERT INTO inbox (consumer, message_id)"  # noqa: S608
    " SELECT * FROM unnest($1::text[], $2::uuid[]) ON CONFLICT DO NOTHING RETURNING 1),"
    " created AS (INSERT INTO aggregate_state (aggregate_type, aggregate_id, version, state)"
    " SELECT * FROM unnest($3::text[], $4::uuid[], $5::bigint[], $6::jsonb[])"
    " ON CONFLICT (aggregate_type, aggregate_id) DO NOTHING RETURNING 1),"
    " changed AS (UPDATE aggregate_state s SET version = u.version, state = u.state,"
    " updated_at = now() FROM unnest($7::text[], $8::uuid[], $9::bigint[], $10::bigint[],"
    " $11::jsonb[]) AS u(aggregate_type, aggregate_id, read_version, version, state)"
    " WHERE s.aggregate_type = u.aggregate_type AND s.aggregate_id = u.aggregate_id"
    " AND s.version = u.read_version RETURNING 1),"
    " events AS (INSERT INTO outbox ("
    + ", ".join(OUTBOX_COLUMNS)
    + ") "
    + outbox_rows_sql(12)
    + " RETURNING 1),"  # noqa: S608  (fixed names and numbered placeholders only)
    f" status AS (INSERT INTO command_status ({STATUS_COLUMNS})"
    " SELECT c, t, s, r::uuid[], p, co, a, b FROM unnest($26::uuid[], $27::text[], $28::text[],"
    " $29::text[], $30::jsonb[], $31::uuid[], $32::jsonb[], $33::text[])"
    " AS u(c, t, s, r, p, co, a, b)" + ON_CONFLICT_REPLACE + " RETURNING 1)"
    " SELECT hisho_expect_written($34::bigint, (SELECT count(*) FROM claimed), $35::bigint,"
    " (SELECT count(*) FROM created) + (SELECT count(*) FROM changed))"
)


class KeptStateRows:
    """`StateRows` that read at once and keep every write for the unit's statement."""

    def __init__(self, connection: asyncpg.Connection, loads: GroupLoad | None = None) -> None:
        self._connection = connection
        self._loads = loads
        self.created: list[tuple[str, uuid.UUID, int, str]] = []
        self.changed: list[tuple[str, uuid.UUID, int, int, str]] = []

    async def load(
        self, aggregate_type: str, aggregate_id: uuid.UUID
    ) -> tuple[int, dict[str, Any]] | None:
        """The committed `(version, state)`, or None (read with the group's, if any)."""
        row = await (
            self._connection.fetchrow(LOAD_SQL, aggregate_type, aggregate_id)
            if self._loads is None
            else self._loads.load(self._connection, aggregate_type, aggregate_id)
        )
        return None if row is None else (int(row[0]), dict(row[1]))

    async def insert(
        self, aggregate_type: str, aggregate_id: uuid.UUID, version: int, state: dict[str, Any]
    ) -> None:
        """Keep a new row; the statement leaves it out (a conflict) if the id is taken."""
        self.created.append((aggregate_type, aggregate_id, version, json.dumps(state)))

    async def update(
        self,
        aggregate_type: str,
        aggregate_id: uuid.UUID,
        read_version: int,
        version: int,
        state: dict[str, Any],
    ) -> None:
        """Keep a change; the statement leaves it out (a conflict) if the row moved on."""
        self.changed.append(
            (aggregate_type, aggregate_id, read_version, version, json.dumps(state))
        )


class KeptInbox:
    """An optimistic inbox: the claim is kept and written by the unit's statement."""

    def __init__(self) -> None:
        self.claim_of: tuple[str, uuid.UUID] | None = None

    async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
        """True, and kept: if `consumer` applied `message_id` already, the commit says so.

        (It raises `AlreadyAppliedError` instead of writing anything.)
        """
        if self.claim_of is not None and self.claim_of != (consumer, message_id):
            raise ValueError("one unit of work claims one message")
        self.claim_of = (consumer, message_id)
        return True


class KeptCommandStatus:
    """`CommandStatuses` keeping the outcome of the unit's one command for its statement."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self.row: tuple[Any, ...] | None = None

    async def record(
        self,
        command_id: uuid.UUID,
        *,
        type: str,  # noqa: A002  (the column's name)
        status: CommandState,
        result_event_ids: Sequence[uuid.UUID] = (),
        problem: dict[str, Any] | None = None,
        correlation_id: uuid.UUID | None = None,
        actor: Actor | None = None,
        body_sha256: str | None = None,
    ) -> None:
        """Keep the outcome of `command_id` (a later one replaces it)."""
        if self.row is not None and self.row[0] != command_id:
            raise ValueError("one unit of work records the status of one command")
        self.row = (
            command_id,
            type,
            CommandState(status).value,
            "{" + ",".join(map(str, result_event_ids)) + "}",  # an array literal of uuids
            None if problem is None else json.dumps(problem),
            correlation_id,
            actor.model_dump_json() if actor else None,
            body_sha256,
        )

    async def get(self, command_id: uuid.UUID) -> CommandStatus | None:
        """The committed outcome of `command_id` (one kept in this unit is not yet), or None."""
        found = await self._connection.fetchrow(GET_SQL, command_id)
        return None if found is None else status_from_row(found)


class _Block:
    """What one `async with` block keeps until its statement."""

    def __init__(
        self,
        connection: AsyncConnection,
        driver: asyncpg.Connection,
        clock: Clock,
        loads: GroupLoad | None,
    ) -> None:
        self.connection = connection
        self.driver = driver
        self.inbox = KeptInbox()
        self.rows = KeptStateRows(driver, loads)
        self.aggregates = Aggregates(self.rows)
        self.outbox = PreparedOutbox(clock)
        self.command_status = KeptCommandStatus(driver)
        self.done = False

    def writes(self) -> Writes:
        """Everything the block keeps for its commit."""
        status = self.command_status.row
        return Writes(
            claims=[self.inbox.claim_of] if self.inbox.claim_of else [],
            created=self.rows.created,
            changed=self.rows.changed,
            events=self.outbox.take_rows(),
            statuses=[status] if status else [],
        )


@dataclass(frozen=True)
class Writes:
    """The rows one unit of work writes at commit, by table."""

    claims: list[tuple[str, uuid.UUID]]
    created: list[tuple[str, uuid.UUID, int, str]]
    changed: list[tuple[str, uuid.UUID, int, int, str]]
    events: list[tuple[Any, ...]]
    statuses: list[tuple[Any, ...]]


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def commit_params(units: Sequence[Writes]) -> list[Any]:
    """`COMMIT_SQL`'s 35 parameters for the writes of `units`, together."""

    def rows(table: str) -> list[tuple[Any, ...]]:
        return [row for unit in units for row in getattr(unit, table)]

    claims, created, changed = rows("claims"), rows("created"), rows("changed")
    return [
        *_columns(claims, 2),
        *_columns(created, 4),
        *_columns(changed, 5),
        *_columns(rows("events"), len(OUTBOX_COLUMNS)),
        *_columns(rows("statuses"), 8),
        len(claims),
        len(created) + len(changed),
    ]


async def write(driver: asyncpg.Connection, units: Sequence[Writes]) -> None:
    """Write `units` in one statement; nothing of them if it raises.

    `AlreadyAppliedError` if a claimed message was applied already, `ConcurrencyError` if a
    read went stale, `AggregateIdTakenError` if a new aggregate's id is another type's (with
    one unit: that unit's; with several: any of them).
    """
    try:
        await driver.fetchval(COMMIT_SQL, *commit_params(units))
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == APPLIED_SQLSTATE:
            raise AlreadyAppliedError(str(exc)) from exc
        if exc.sqlstate == STALE_SQLSTATE:
            raise ConcurrencyError(str(exc)) from exc
        if is_id_taken(exc):
            created = [(kind, key) for unit in units for kind, key, *_ in unit.created]
            raise await taken_error(driver, exc, created) from exc
        raise


class SqlAggregateUnitOfWork:
    """The processor's `UnitOfWork` with `aggregates`, on a connection of `engine`'s pool.

    One block at a time per instance; make one instance per concurrent message.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock = utc_now,
        group: GroupCommit | None = None,
        loads: GroupLoad | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._group = group  # shared by the units of one process: their commits go together
        self._loads = loads  # likewise their aggregate reads
        self._block: _Block | None = None

    @property
    def inbox(self) -> KeptInbox:
        """The optimistic inbox (the claim is written, and checked, at commit)."""
        return self._current().inbox

    @property
    def aggregates(self) -> Aggregates:
        """The repositories of the open block."""
        return self._current().aggregates

    @property
    def outbox(self) -> Outbox:
        """The outbox rows kept for the commit."""
        return self._current().outbox

    @property
    def command_status(self) -> CommandStatuses:
        """The command's outcome kept for the commit."""
        return self._current().command_status

    async def __aenter__(self) -> Self:
        if self._block is not None:
            raise RuntimeError("this unit of work is already in use; make one per message")
        connection = await self._engine.connect()
        try:
            driver = (await connection.get_raw_connection()).driver_connection
        except BaseException:
            await connection.close()
            raise
        if driver is None:  # pragma: no cover  (a checked-out connection has one)
            await connection.close()
            raise RuntimeError("the pooled connection has no driver connection")
        self._block = _Block(connection, driver, self._clock, self._loads)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        block, self._block = self._current(), None
        await block.connection.close()  # back to the pool; nothing uncommitted is on it

    async def commit(self) -> None:
        """Write everything kept, in one statement.

        `AlreadyAppliedError` if the claimed message was applied already, `ConcurrencyError`
        if a read went stale; either way nothing was written.
        """
        block = self._current()
        if block.done:
            raise RuntimeError("this block already committed or rolled back")
        block.done = True
        if self._group is None:
            await write(block.driver, [block.writes()])
        else:
            await self._group.commit(block.driver, block.writes())

    async def rollback(self) -> None:
        """Forget everything kept (nothing was written)."""
        self._current().done = True

    def _current(self) -> _Block:
        if self._block is None:
            raise RuntimeError("use the unit of work inside `async with uow:`")
        return self._block
