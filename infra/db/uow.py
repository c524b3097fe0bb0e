"""The unit of work every consumer's handler sees: one port, its errors, no adapter.

A unit of work is one atomic change: aggregates (repositories), the inbox claim, the outbox
and extra rows (projections, delivery records, timers) are written together at `commit()`,
or not at all; leaving `async with uow:` without committing writes nothing. The events the
touched aggregates recorded are drained into the outbox on commit (`save_aggregates` with
the unit's `context`), unless the handler drained them itself.

What a commit may refuse with (nothing of the unit is written then):

- `AlreadyAppliedError`: the claimed message was applied by this consumer already (a
  duplicate: acknowledge it);
- `ConcurrencyError`: something read went stale, or a new aggregate's id was taken by a
  concurrent create (transient: retry the message with a fresh unit);
- `HeldError`: an ordered consumer's message waits behind a held one of its partition;
- a `DomainError`, such as `aggregate-id-taken` (a new aggregate's id is another type's).

The PostgreSQL adapter is `infra.db.pg_uow.PgUnitOfWork`; the unit tests' is `tests.fakes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Self

from infra.db.errors import AlreadyAppliedError, ConcurrencyError, HeldError
from infra.db.repositories import EventSink

__all__ = [
    "AlreadyAppliedError",
    "ConcurrencyError",
    "HeldError",
    "Inbox",
    "Outbox",
    "Rows",
    "UnitOfWork",
]

if TYPE_CHECKING:
    import uuid
    from types import TracebackType

    from events import Command, Envelope, Message
    from infra.db.repositories import Aggregates
    from infra.db.table import Table
    from infra.message_context import MessageContext


class Inbox(Protocol):
    """Remembers which messages a consumer already applied."""

    async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
        """False if this consumer is known NOW to have applied the message; else True.

        A duplicate not known yet surfaces at commit as `AlreadyAppliedError` (nothing
        written).
        """
        ...


class Outbox(EventSink, Protocol):
    """Collects the envelopes a unit of work will publish once it commits.

    `add_event` (from `EventSink`) records a domain event and returns its envelope id.
    """

    envelopes: list[Envelope[Message]]

    async def add_command(self, command: Command, *, context: MessageContext) -> uuid.UUID:
        """Record a command to send; return its envelope id."""
        ...


class Rows(Protocol):
    """Rows of other tables written with the unit."""

    def add(self, table: Table, row: tuple[Any, ...]) -> None:
        """Write `row` into `table` at commit, in the same transaction.

        `row` holds the table's written columns (`table.written`), in order; the table's
        conflict rule applies.
        """
        ...


class UnitOfWork(Protocol):
    """One atomic change: aggregates, inbox, outbox and extra rows commit together or not.

    `context` is the causal metadata of the message being handled (set at construction or
    before commit): the commit drains the aggregates' events with it.
    """

    context: MessageContext | None

    @property
    def inbox(self) -> Inbox:
        """The inbox, in this unit."""
        ...

    @property
    def outbox(self) -> Outbox:
        """The outbox, in this unit."""
        ...

    @property
    def aggregates(self) -> Aggregates:
        """The repositories, in this unit."""
        ...

    @property
    def rows(self) -> Rows:
        """Extra rows, in this unit."""
        ...

    async def save_aggregates(self, context: MessageContext) -> list[uuid.UUID]:
        """Drain the events recorded by touched aggregates into the outbox.

        Their state is kept for the commit; returns their envelope ids, in order.
        """
        ...

    def hold_guard(self, consumer: str, partition_key: str, message_id: uuid.UUID) -> None:
        """Ordered consumers: make the commit check and release this message's hold.

        The commit fails with `HeldError(blocker)` if `consumer_held` has a row of
        `(consumer, partition_key)` before this message's own row (any row, if it has none);
        it deletes this message's own held row.
        """
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None:
        """Make every write of this unit durable, at once (or raise, having written nothing)."""
        ...

    async def rollback(self) -> None:
        """Discard every write of this unit."""
        ...
