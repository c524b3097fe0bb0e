"""Test doubles for the unit tier: a pinned clock, predictable ids, an in-memory unit of work.

`FakeUnitOfWork` implements `infra.db.uow.UnitOfWork` over a `FakeDatabase` (shareable, to
play competing consumers), with PostgreSQL's semantics (`infra.db.pg_uow`): writes made
inside `async with uow:` count only once `commit()` ran, all or nothing; leaving the block
(or `rollback()`) discards them. A claim is False for a message known applied; one applied
meanwhile, a stale read or an id taken meanwhile make the commit raise (`AlreadyAppliedError`,
`ConcurrencyError`), and so does a held message (`HeldError`) or a new aggregate with another
type's id (`AggregateIdTakenError`). Extra rows follow their table's conflict rule.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from infra.db.aggregate_ids import AggregateIdTakenError
from infra.db.command_status import CommandStatus, status_from_row
from infra.db.tables import COMMAND_STATUS, CONSUMER_HELD
from infra.db.unit_block import BlockUnitOfWork, UnitBlock
from infra.db.uow import AlreadyAppliedError, ConcurrencyError, HeldError

if TYPE_CHECKING:
    from events import Envelope, Message
    from infra.db.table import Table
    from infra.message_context import MessageContext

StateKey = tuple[str, UUID]
States = dict[StateKey, tuple[int, dict[str, Any]]]


class FakeClock:
    """A clock that only moves when told to; pass `clock.now` (or the clock) as a `Clock`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        """The current fake time (UTC-aware)."""
        return self._now

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward by `delta` and return the new time."""
        if delta < timedelta(0):
            raise ValueError("a FakeClock never goes back")
        self._now += delta
        return self._now


class FakeIds:
    """Predictable UUIDs, one after another: 00000000-...-000000000001, ...-0002, ..."""

    def __init__(self, start: int = 1) -> None:
        self._next = start

    def __call__(self) -> UUID:
        value = UUID(int=self._next)
        self._next += 1
        return value


class FakeDatabase:
    """What fake units of work committed: claims, aggregate states, envelopes, table rows."""

    def __init__(self, states: States | None = None) -> None:
        self.states: States = {} if states is None else states
        self.claimed: set[tuple[str, UUID]] = set()
        self.envelopes: list[Envelope[Message]] = []
        self.tables: dict[str, dict[Any, dict[str, Any]]] = {}  # rows by conflict key (or number)
        self._numbers = itertools.count(1)  # identity and serial columns, and keyless rows

    def table(self, table: Table) -> list[dict[str, Any]]:
        """The committed rows of `table`, in insert order."""
        return list(self.tables.get(table.name, {}).values())

    def insert(self, table: Table, row: tuple[Any, ...], now: datetime) -> None:
        """Apply one row as PostgreSQL would: defaults, then the table's conflict rule."""
        record = table.record(row)
        for column in table.columns:
            if column.type == "jsonb" and isinstance(record.get(column.name), str):
                record[column.name] = json.loads(record[column.name])  # JSONB round trip
            elif not column.written:
                numbered = column.identity or column.type == "bigserial"
                record[column.name] = (
                    next(self._numbers) if numbered else now if column.default == "now()" else None
                )
        stored = self.tables.setdefault(table.name, {})
        rule = table.conflict
        key = tuple(record[name] for name in rule.key) if rule else next(self._numbers)
        old = stored.get(key)
        if old is None:
            stored[key] = record
        elif (
            rule is not None and rule.replace and (rule.allows is None or rule.allows(old, record))
        ):
            old.update({name: record[name] for name in table.written})
            old.update(dict.fromkeys(rule.touch, now))

    def blocker(self, consumer: str, partition_key: str, message_id: UUID) -> UUID | None:
        """The first held message of the partition before `message_id`'s own row, or None."""
        held = [
            row
            for row in self.table(CONSUMER_HELD)
            if (row["consumer"], row["partition_key"]) == (consumer, partition_key)
        ]
        own = next((row["seq"] for row in held if row["message_id"] == message_id), None)
        before = [row for row in held if own is None or row["seq"] < own]
        return min(before, key=lambda row: row["seq"])["message_id"] if before else None

    def release(self, consumer: str, message_id: UUID) -> None:
        """Delete the held row of `message_id`, if any."""
        rows = self.tables.get(CONSUMER_HELD.name, {})
        for key, row in list(rows.items()):
            if (row["consumer"], row["message_id"]) == (consumer, message_id):
                del rows[key]


class FakeInbox:
    """Claims of one block: False for a message already applied (committed)."""

    def __init__(self, committed: set[tuple[str, UUID]]) -> None:
        self._committed = committed
        self.claims: list[tuple[str, UUID]] = []

    async def claim(self, consumer: str, message_id: UUID) -> bool:
        """False if `consumer` applied `message_id` already; else True, checked at commit."""
        key = (consumer, message_id)
        if key in self._committed:
            return False
        if key not in self.claims:
            self.claims.append(key)
        return True


class FakeStateRows:
    """`aggregate_state` rows in memory, JSON round-tripped like JSONB; written at commit.

    A conflict already known raises at once; the commit checks again (a rival may commit
    in between).
    """

    def __init__(self, committed: States) -> None:
        self._committed = committed
        self.written: States = {}
        self.expected: dict[StateKey, int] = {}  # version each write expects stored (0: none)

    async def load(
        self, aggregate_type: str, aggregate_id: UUID
    ) -> tuple[int, dict[str, Any]] | None:
        """The committed `(version, state)`, or None."""
        row = self._committed.get((aggregate_type, aggregate_id))
        return None if row is None else (row[0], json.loads(json.dumps(row[1])))

    async def insert(
        self, aggregate_type: str, aggregate_id: UUID, version: int, state: dict[str, Any]
    ) -> None:
        """Create a row; `ConcurrencyError` if the id is taken."""
        self._write((aggregate_type, aggregate_id), 0, version, state)

    async def update(
        self,
        aggregate_type: str,
        aggregate_id: UUID,
        read_version: int,
        version: int,
        state: dict[str, Any],
    ) -> None:
        """Replace a row still at `read_version`; `ConcurrencyError` otherwise."""
        self._write((aggregate_type, aggregate_id), read_version, version, state)

    def _write(self, key: StateKey, read: int, version: int, state: dict[str, Any]) -> None:
        self.expected.setdefault(key, read)
        self.check()
        self.written[key] = (version, json.loads(json.dumps(state)))

    def check(self) -> None:
        """`ConcurrencyError` if a row written here moved on (or was created) meanwhile."""
        for (kind, key), read in self.expected.items():
            stored = self._committed.get((kind, key))
            if (stored[0] if stored else 0) != read:
                raise ConcurrencyError(f"{kind} {key} moved on from {read}")

    def taken(self) -> None:
        """`AggregateIdTakenError` if a new aggregate's id is another type's."""
        holders = {key: kind for kind, key in self._committed}
        for (kind, key), read in self.expected.items():
            if read == 0 and holders.get(key, kind) != kind:
                raise AggregateIdTakenError(kind, key, holders[key])


class _Block(UnitBlock[FakeInbox, FakeStateRows]):
    def __init__(self, uow: FakeUnitOfWork) -> None:
        super().__init__(FakeInbox(uow.db.claimed), FakeStateRows(uow.db.states), uow.clock)


class FakeUnitOfWork(BlockUnitOfWork[_Block]):
    """In-memory `UnitOfWork` over `db` (or over `rows`, aggregate states shared with others).

    `envelopes`, `claimed`, `states` and `statuses` show what was committed; `commits`
    counts this unit's commits.
    """

    def __init__(
        self,
        *,
        clock: FakeClock | None = None,
        db: FakeDatabase | None = None,
        rows: States | None = None,
        context: MessageContext | None = None,
    ) -> None:
        super().__init__(context)
        self.clock = clock or FakeClock()
        self.db = db or FakeDatabase(rows)
        self.commits = 0

    @property
    def envelopes(self) -> list[Envelope[Message]]:
        """Every committed envelope, in order."""
        return self.db.envelopes

    @property
    def claimed(self) -> set[tuple[str, UUID]]:
        """The committed inbox rows."""
        return self.db.claimed

    @property
    def states(self) -> States:
        """The committed aggregate states."""
        return self.db.states

    @property
    def statuses(self) -> dict[UUID, CommandStatus]:
        """The committed command statuses."""
        return {row["command_id"]: status_from_row(row) for row in self.db.table(COMMAND_STATUS)}

    @property
    def inbox(self) -> FakeInbox:
        """The inbox, in this block."""
        return self._current().inbox

    async def _open(self) -> _Block:
        return _Block(self)

    async def _write(self, block: _Block) -> None:
        """Keep every write of `block` at once, or raise as PostgreSQL's statement would."""
        db = self.db
        applied = [claim for claim in block.inbox.claims if claim in db.claimed]
        if applied:
            raise AlreadyAppliedError(f"already applied: {applied}")
        block.states.check()
        for guard in block.guards:
            blocker = db.blocker(*guard)
            if blocker is not None:
                raise HeldError(blocker)
        block.states.taken()
        db.claimed.update(block.inbox.claims)
        db.states.update(block.states.written)
        db.envelopes.extend(block.outbox.envelopes)
        now = self.clock()
        for table, rows in block.rows.by_table.items():
            for row in rows.values():
                db.insert(table, row, now)
        for consumer, _, message_id in block.guards:
            db.release(consumer, message_id)
        self.commits += 1
