"""`UnitOfWork` on PostgreSQL: reads as they come, every write in ONE statement at commit.

A unit costs one read per aggregate it loads and one statement that writes everything it
decided (`infra.db.statement`): the inbox row, the new and changed aggregate states, the
outbox rows, the extra rows (`uow.rows.add(table, row)`) and the hold guard. The reads and
the inbox claim are optimistic; the statement checks them, and refuses as a whole
(`AlreadyAppliedError`, `ConcurrencyError`, `HeldError`, `aggregate-id-taken`). A duplicate
is decided once more before its commit finds out; it only reads, and nothing of that
decision is kept.

Two optional strategies, shared by the units of one process, sit behind the same methods:
`GroupCommit` (commits ready in one event-loop turn share one statement) and `GroupLoad`
(aggregate reads asked for in one turn share one SELECT).

The causing message's context: pass `context=` to the constructor, or set `uow.context`
before `commit()`; the commit drains the aggregates' remaining events with it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from infra.clock import Clock, utc_now
from infra.db.engine import driver_of
from infra.db.inbox import PgInbox
from infra.db.repositories import LOAD_SQL
from infra.db.state_tables import AGGREGATE_STATE
from infra.db.statement import Changed, Writes, write
from infra.db.tables import INBOX, OUTBOX
from infra.db.unit_block import BlockUnitOfWork, UnitBlock

if TYPE_CHECKING:
    import uuid

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.db.group_commit import GroupCommit
    from infra.db.group_load import GroupLoad
    from infra.message_context import MessageContext


class PgStateRows:
    """`StateRows` that read at once and keep every write for the unit's statement.

    A second write of one aggregate in the unit replaces the first (keeping what it checks).
    """

    def __init__(self, connection: asyncpg.Connection, loads: GroupLoad | None) -> None:
        self._connection = connection
        self._loads = loads
        self.created: dict[tuple[str, uuid.UUID], tuple[Any, ...]] = {}
        self.changed: dict[tuple[str, uuid.UUID], Changed] = {}

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
        key = (aggregate_type, aggregate_id)
        self.created[key] = (aggregate_type, aggregate_id, version, json.dumps(state))

    async def update(
        self,
        aggregate_type: str,
        aggregate_id: uuid.UUID,
        read_version: int,
        version: int,
        state: dict[str, Any],
    ) -> None:
        """Keep a change; the statement leaves it out (a conflict) if the row moved on."""
        key = (aggregate_type, aggregate_id)
        if key in self.created:  # created in this unit: the insert carries the latest state
            self.created[key] = (aggregate_type, aggregate_id, version, json.dumps(state))
            return
        first = self.changed.get(key)
        read = read_version if first is None else first[2]
        self.changed[key] = (aggregate_type, aggregate_id, read, version, json.dumps(state))


class _Block(UnitBlock[PgInbox, PgStateRows]):
    """What one `async with` block keeps until its statement, and the connection it runs on."""

    def __init__(
        self,
        connection: AsyncConnection,
        driver: asyncpg.Connection,
        clock: Clock,
        loads: GroupLoad | None,
    ) -> None:
        super().__init__(PgInbox(), PgStateRows(driver, loads), clock)
        self.connection = connection
        self.driver = driver

    def writes(self) -> Writes:
        """Everything the block keeps for its commit."""
        inserts = {table: list(rows.values()) for table, rows in self.rows.by_table.items()}
        inserts.setdefault(INBOX, []).extend(self.inbox.claims)
        inserts.setdefault(AGGREGATE_STATE, []).extend(self.states.created.values())
        inserts.setdefault(OUTBOX, []).extend(self.outbox.take_rows())
        return Writes(inserts, list(self.states.changed.values()), self.guards)


class PgUnitOfWork(BlockUnitOfWork[_Block]):
    """`infra.db.uow.UnitOfWork` on a connection of `engine`'s pool, one statement at commit.

    `engine` may be a connection instead (a test's outer transaction): the statement then
    runs inside that transaction, and the connection is left open.
    One block at a time per instance; make one instance per concurrent message.
    """

    def __init__(
        self,
        engine: AsyncEngine | AsyncConnection,
        *,
        context: MessageContext | None = None,
        clock: Clock = utc_now,
        group: GroupCommit | None = None,
        loads: GroupLoad | None = None,
    ) -> None:
        super().__init__(context)
        self._engine = engine
        self._clock = clock
        self._group = group  # shared by the units of one process: their commits go together
        self._loads = loads  # likewise their aggregate reads

    @property
    def inbox(self) -> PgInbox:
        """The optimistic inbox (the claim is written, and checked, at commit)."""
        return self._current().inbox

    async def _open(self) -> _Block:
        engine = self._engine
        connection = engine if isinstance(engine, AsyncConnection) else await engine.connect()
        try:
            driver = await _driver(connection)
        except BaseException:
            if connection is not engine:
                await connection.close()
            raise
        return _Block(connection, driver, self._clock, self._loads)

    async def _close(self, block: _Block) -> None:
        if block.connection is not self._engine:
            await block.connection.close()  # back to the pool; nothing uncommitted is on it

    async def _write(self, block: _Block) -> None:
        writes = block.writes()
        if not writes:
            return
        if self._group is None:
            await write(block.driver, [writes])
        else:
            await self._group.commit(block.driver, writes)


async def _driver(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under `connection`.

    Inside a caller's transaction, one statement first makes that transaction real
    (SQLAlchemy's driver opens it lazily), so the commit statement runs inside it.
    """
    driver = await driver_of(connection)
    if connection.in_transaction() and not driver.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    return driver
