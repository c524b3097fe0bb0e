"""Test doubles for the unit tier: a pinned clock, predictable ids, an in-memory unit of work.

`FakeUnitOfWork` implements `infra.db.uow.UnitOfWork`: writes made inside `async with uow:`
count only once `commit()` ran; leaving the block (or `rollback()`) discards the rest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from infra.db.command_status import CommandState, CommandStatus
from infra.db.outbox import command_envelope, event_envelope
from infra.db.repositories import Aggregates, ConcurrencyError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from events import Actor, Command, DomainEvent, Envelope, Message
    from infra.message_context import MessageContext


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


class FakeInbox:
    """Claims of one block, checked against the committed ones."""

    def __init__(self, committed: set[tuple[str, UUID]]) -> None:
        self._committed = committed
        self.claimed: set[tuple[str, UUID]] = set()

    async def claim(self, consumer: str, message_id: UUID) -> bool:
        """True the first time; False for a redelivery."""
        key = (consumer, message_id)
        if key in self._committed or key in self.claimed:
            return False
        self.claimed.add(key)
        return True


class FakeOutbox:
    """Envelopes of one block, built exactly as the SQL outbox builds them."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.envelopes: list[Envelope[Message]] = []

    async def add_event(
        self,
        event: DomainEvent,
        *,
        aggregate_id: UUID,
        aggregate_version: int,
        context: MessageContext,
    ) -> UUID:
        """Record a domain event; return its envelope id."""
        envelope = event_envelope(
            event,
            aggregate_id=aggregate_id,
            aggregate_version=aggregate_version,
            context=context,
            clock=self._clock,
        )
        self.envelopes.append(envelope)
        return envelope.id

    async def add_command(self, command: Command, *, context: MessageContext) -> UUID:
        """Record a command to send; return its envelope id."""
        envelope = command_envelope(command, context=context, clock=self._clock)
        self.envelopes.append(envelope)
        return envelope.id


class FakeCommandStatuses:
    """Command outcomes of one block, read through to the committed ones."""

    def __init__(self, committed: dict[UUID, CommandStatus], clock: FakeClock) -> None:
        self._committed = committed
        self._clock = clock
        self.recorded: dict[UUID, CommandStatus] = {}

    async def record(
        self,
        command_id: UUID,
        *,
        type: str,  # noqa: A002  (the protocol's name)
        status: CommandState,
        result_event_ids: Sequence[UUID] = (),
        problem: dict[str, Any] | None = None,
        correlation_id: UUID | None = None,
        actor: Actor | None = None,
        body_sha256: str | None = None,
    ) -> None:
        """Insert or replace the outcome of a command."""
        previous = await self.get(command_id)
        now = self._clock()
        self.recorded[command_id] = CommandStatus(
            command_id=command_id,
            type=type,
            status=CommandState(status),
            result_event_ids=tuple(result_event_ids),
            problem=problem,
            correlation_id=correlation_id,
            actor=actor,
            body_sha256=body_sha256,
            accepted_at=previous.accepted_at if previous else now,
            updated_at=now,
        )

    async def get(self, command_id: UUID) -> CommandStatus | None:
        """The outcome of a command as this block sees it, or None."""
        return self.recorded.get(command_id) or self._committed.get(command_id)


class _Block:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.inbox = FakeInbox(uow.claimed)
        self.outbox = FakeOutbox(uow.clock)
        self.command_status = FakeCommandStatuses(uow.statuses, uow.clock)


class FakeUnitOfWork:
    """In-memory `UnitOfWork`: `envelopes`, `claimed`, `statuses` hold what was committed."""

    def __init__(self, *, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.envelopes: list[Envelope[Message]] = []
        self.claimed: set[tuple[str, UUID]] = set()
        self.statuses: dict[UUID, CommandStatus] = {}
        self.commits = 0
        self._block: _Block | None = None

    @property
    def inbox(self) -> FakeInbox:
        """The inbox, in this block."""
        return self._current().inbox

    @property
    def outbox(self) -> FakeOutbox:
        """The outbox, in this block."""
        return self._current().outbox

    @property
    def command_status(self) -> FakeCommandStatuses:
        """Command outcomes, in this block."""
        return self._current().command_status

    async def __aenter__(self) -> Self:
        if self._block is not None:
            raise RuntimeError("this unit of work is already in use; make one per message")
        self._block = _Block(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._block = None

    async def commit(self) -> None:
        """Keep every write of this block, at once."""
        block = self._current()
        self.envelopes.extend(block.outbox.envelopes)
        self.claimed |= block.inbox.claimed
        self.statuses.update(block.command_status.recorded)
        self.commits += 1
        self._block = _Block(self)

    async def rollback(self) -> None:
        """Discard every write of this block."""
        self._current()
        self._block = _Block(self)

    def _current(self) -> _Block:
        if self._block is None:
            raise RuntimeError("use the unit of work inside `async with uow:`")
        return self._block


class FakeStateRows:
    """`aggregate_state` rows in memory, JSON round-tripped like JSONB; writes count on commit."""

    def __init__(self, committed: dict[tuple[str, UUID], tuple[int, dict[str, Any]]]) -> None:
        self._committed = committed
        self.written: dict[tuple[str, UUID], tuple[int, dict[str, Any]]] = {}

    async def load(
        self, aggregate_type: str, aggregate_id: UUID
    ) -> tuple[int, dict[str, Any]] | None:
        """The stored `(version, state)`, or None."""
        key = (aggregate_type, aggregate_id)
        row = self.written.get(key) or self._committed.get(key)
        return None if row is None else (row[0], json.loads(json.dumps(row[1])))

    async def insert(
        self, aggregate_type: str, aggregate_id: UUID, version: int, state: dict[str, Any]
    ) -> None:
        """Create a row; `ConcurrencyError` if the id is taken."""
        if await self.load(aggregate_type, aggregate_id) is not None:
            raise ConcurrencyError(f"{aggregate_type} {aggregate_id} exists")
        self.written[(aggregate_type, aggregate_id)] = (version, json.loads(json.dumps(state)))

    async def update(
        self,
        aggregate_type: str,
        aggregate_id: UUID,
        read_version: int,
        version: int,
        state: dict[str, Any],
    ) -> None:
        """Replace a row still at `read_version`; `ConcurrencyError` otherwise."""
        current = await self.load(aggregate_type, aggregate_id)
        if current is None or current[0] != read_version:
            raise ConcurrencyError(f"{aggregate_type} {aggregate_id} moved on from {read_version}")
        self.written[(aggregate_type, aggregate_id)] = (version, json.loads(json.dumps(state)))


class FakeAggregateUnitOfWork(FakeUnitOfWork):
    """`FakeUnitOfWork` with repositories over `rows` (shareable, to play competing processors)."""

    def __init__(
        self,
        *,
        clock: FakeClock | None = None,
        rows: dict[tuple[str, UUID], tuple[int, dict[str, Any]]] | None = None,
    ) -> None:
        super().__init__(clock=clock)
        self.rows = {} if rows is None else rows
        self._state = FakeStateRows(self.rows)
        self._aggregates = Aggregates(self._state)

    @property
    def aggregates(self) -> Aggregates:
        """The repositories, in this block."""
        self._current()
        return self._aggregates

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self._fresh()
        return self

    async def commit(self) -> None:
        """Keep every write of this block, state rows included, at once."""
        await super().commit()
        self.rows.update(self._state.written)
        self._fresh()

    async def rollback(self) -> None:
        """Discard every write of this block."""
        await super().rollback()
        self._fresh()

    def _fresh(self) -> None:
        self._state = FakeStateRows(self.rows)
        self._aggregates = Aggregates(self._state)
