"""The unit of work: one PostgreSQL transaction for state, inbox row and outbox rows.

`async with uow:` opens a session and a transaction; `await uow.commit()` commits the
aggregate state, the inbox claim, the command status and every outbox row together;
leaving the block without committing (or by an exception) rolls all of them back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Self

from infra.clock import Clock, utc_now
from infra.db.command_status import CommandState, CommandStatus, SqlCommandStatuses
from infra.db.inbox import SqlInbox
from infra.db.outbox import SqlOutbox

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from types import TracebackType

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from events import Actor, Command, DomainEvent, Envelope, Message
    from infra.message_context import MessageContext


class Inbox(Protocol):
    """Remembers which messages a consumer already applied."""

    async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
        """True the first time; False for a redelivery."""
        ...


class Outbox(Protocol):
    """Collects the envelopes a unit of work will publish once it commits."""

    envelopes: list[Envelope[Message]]

    async def add_event(
        self,
        event: DomainEvent,
        *,
        aggregate_id: uuid.UUID,
        aggregate_version: int,
        context: MessageContext,
    ) -> uuid.UUID:
        """Record a domain event; return its envelope id."""
        ...

    async def add_command(self, command: Command, *, context: MessageContext) -> uuid.UUID:
        """Record a command to send; return its envelope id."""
        ...


class CommandStatuses(Protocol):
    """Records what became of each command."""

    async def record(
        self,
        command_id: uuid.UUID,
        *,
        type: str,  # noqa: A002
        status: CommandState,
        result_event_ids: Sequence[uuid.UUID] = (),
        problem: dict[str, Any] | None = None,
        correlation_id: uuid.UUID | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Insert or replace the outcome of a command."""
        ...

    async def get(self, command_id: uuid.UUID) -> CommandStatus | None:
        """The recorded outcome of a command, or None."""
        ...


class UnitOfWork(Protocol):
    """One atomic change: state, inbox, command status and outbox commit together or not."""

    @property
    def inbox(self) -> Inbox:
        """The inbox, in this unit's transaction."""
        ...

    @property
    def outbox(self) -> Outbox:
        """The outbox, in this unit's transaction."""
        ...

    @property
    def command_status(self) -> CommandStatuses:
        """Command outcomes, in this unit's transaction."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None:
        """Make every write of this unit durable, at once."""
        ...

    async def rollback(self) -> None:
        """Discard every write of this unit."""
        ...


class _Active:
    """The session of one `async with` block and the adapters bound to it."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.inbox = SqlInbox(session)
        self.outbox = SqlOutbox(session, clock)
        self.command_status = SqlCommandStatuses(session)


class SqlUnitOfWork:
    """The SQLAlchemy unit of work. Subclasses add repositories in `attach_repositories`.

    One block at a time per instance; make one instance per concurrent message.
    """

    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], *, clock: Clock = utc_now
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._active: _Active | None = None

    def attach_repositories(self, session: AsyncSession) -> None:
        """Bind repositories to this block's session (override; the base has none)."""

    @property
    def session(self) -> AsyncSession:
        """The open session (for repositories and queries of this unit)."""
        return self._current().session

    @property
    def inbox(self) -> SqlInbox:
        """The inbox, in this unit's transaction."""
        return self._current().inbox

    @property
    def outbox(self) -> SqlOutbox:
        """The outbox, in this unit's transaction."""
        return self._current().outbox

    @property
    def command_status(self) -> SqlCommandStatuses:
        """Command outcomes, in this unit's transaction."""
        return self._current().command_status

    async def __aenter__(self) -> Self:
        if self._active is not None:
            raise RuntimeError("this unit of work is already in use; make one per message")
        session = self._session_factory()
        await session.begin()
        self._active = _Active(session, self._clock)
        self.attach_repositories(session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        active, self._active = self._current(), None
        try:
            await active.session.rollback()  # a no-op after commit
        finally:
            await active.session.close()

    async def commit(self) -> None:
        """Commit state, inbox, command status and outbox rows in one transaction."""
        await self._current().session.commit()

    async def rollback(self) -> None:
        """Discard every write of this block."""
        await self._current().session.rollback()

    def _current(self) -> _Active:
        if self._active is None:
            raise RuntimeError("use the unit of work inside `async with uow:`")
        return self._active
