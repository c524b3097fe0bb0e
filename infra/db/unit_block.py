"""What every unit of work does with its `async with` block, whatever stores the writes.

A block holds the unit's inbox claims, repositories, outbox, extra rows and hold guards until
`commit()`: the commit drains the aggregates' pending events (with the unit's `context`),
then hands the block to the store (`_write`), which writes all of it or raises having
written nothing. `BlockUnitOfWork` is that life cycle once; PostgreSQL's unit
(`infra.db.pg_uow`) and the tests' in-memory one (`tests.fakes`) say only how a block is
opened, written and closed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from infra.db.outbox import PgOutbox
from infra.db.repositories import Aggregates

if TYPE_CHECKING:
    import uuid
    from types import TracebackType

    from infra.clock import Clock
    from infra.db.repositories import StateRows
    from infra.db.table import Table
    from infra.db.uow import Inbox
    from infra.message_context import MessageContext


class UnitRows:
    """`infra.db.uow.Rows` kept for the commit, by table.

    In a table with a conflict rule, a later row with the same key replaces an earlier one
    (one statement cannot write a key twice).
    """

    def __init__(self) -> None:
        self.by_table: dict[Table, dict[Any, tuple[Any, ...]]] = {}

    def add(self, table: Table, row: tuple[Any, ...]) -> None:
        """Write `row` into `table` at commit, with the rest of the unit."""
        if len(row) != len(table.written):
            raise ValueError(f"a {table.name} row has {len(table.written)} values: {table.written}")
        kept = self.by_table.setdefault(table, {})
        key = tuple(row[n] for n in table.key_positions) if table.key_positions else len(kept)
        kept[key] = row


InboxT = TypeVar("InboxT", bound="Inbox")
StatesT = TypeVar("StatesT", bound="StateRows")


class UnitBlock(Generic[InboxT, StatesT]):
    """What one `async with` block keeps until its commit."""

    def __init__(self, inbox: InboxT, states: StatesT, clock: Clock) -> None:
        self.inbox = inbox
        self.states = states
        self.aggregates = Aggregates(states)
        self.outbox = PgOutbox(clock)
        self.rows = UnitRows()
        self.guards: list[tuple[str, str, uuid.UUID]] = []  # consumer, partition key, message
        self.done = False  # committed or rolled back


BlockT = TypeVar("BlockT", bound=UnitBlock[Any, Any])


class BlockUnitOfWork(ABC, Generic[BlockT]):
    """`infra.db.uow.UnitOfWork`'s life cycle; subclasses open, write and close a block.

    One block at a time per instance; make one instance per concurrent message.
    """

    def __init__(self, context: MessageContext | None) -> None:
        self.context = context  # the causing message's; the commit drains events with it
        self._block: BlockT | None = None

    @abstractmethod
    async def _open(self) -> BlockT:
        """A fresh block (its connection checked out, if any)."""

    @abstractmethod
    async def _write(self, block: BlockT) -> None:
        """Write everything `block` keeps, at once, or raise having written nothing."""

    async def _close(self, block: BlockT) -> None:
        """Give back what `_open` took (nothing, by default)."""

    @property
    def aggregates(self) -> Aggregates:
        """The repositories of the open block."""
        return self._current().aggregates

    @property
    def outbox(self) -> PgOutbox:
        """The envelopes kept for the commit."""
        return self._current().outbox

    @property
    def rows(self) -> UnitRows:
        """Extra rows kept for the commit."""
        return self._current().rows

    async def save_aggregates(self, context: MessageContext) -> list[uuid.UUID]:
        """Drain the touched aggregates' events into the outbox; keep their state rows."""
        block = self._current()
        return await block.aggregates.save(block.outbox, context)

    def hold_guard(self, consumer: str, partition_key: str, message_id: uuid.UUID) -> None:
        """Make the commit fail with `HeldError` behind a held row; it releases this one's."""
        self._current().guards.append((consumer, partition_key, message_id))

    async def __aenter__(self) -> Self:
        if self._block is not None:
            raise RuntimeError("this unit of work is already in use; make one per message")
        self._block = await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        block, self._block = self._current(), None
        await self._close(block)

    async def commit(self) -> None:
        """Write everything kept, at once (or raise, having written nothing).

        Events still pending on touched aggregates are drained first, with `context`.
        """
        block = self._current()
        if block.done:
            raise RuntimeError("this block already committed or rolled back")
        if self.context is not None:
            await self.save_aggregates(self.context)
        elif block.aggregates.pending:
            raise RuntimeError("aggregates recorded events: set the unit's context to save them")
        block.done = True
        await self._write(block)

    async def rollback(self) -> None:
        """Forget everything kept (nothing was written)."""
        self._current().done = True

    def _current(self) -> BlockT:
        if self._block is None:
            raise RuntimeError("use the unit of work inside `async with uow:`")
        return self._block
