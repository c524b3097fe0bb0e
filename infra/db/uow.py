"""The unit of work: one PostgreSQL transaction for state, inbox row and outbox rows.

`async with uow:` opens a session and a transaction; `await uow.commit()` commits the
aggregate state, the inbox claim, the command status and every outbox row together;
leaving the block without committing (or by an exception) rolls all of them back.

The transaction is asyncpg's, on a connection the unit checks out of the engine's pool: the
inbox claim and the status upsert run there as fixed SQL that asyncpg prepares once per
connection, without SQLAlchemy's per-statement cost. The block's session is bound to that
connection, so whatever goes through it runs inside the same transaction (SQLAlchemy's
driver opens a savepoint there, released or rolled back with the block).

The `UnitOfWork` protocol here is the one every consumer's handler sees; the command
processor's own implementation (`infra.db.command_unit`) writes everything in one statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Self

from sqlalchemy.ext.asyncio import AsyncConnection

from infra.clock import Clock, utc_now
from infra.db.command_status import CommandState, CommandStatus, SqlCommandStatuses
from infra.db.inbox import SqlInbox
from infra.db.outbox import SqlOutbox

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence
    from types import TracebackType

    import asyncpg
    from asyncpg.transaction import Transaction
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
        body_sha256: str | None = None,
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
    """The connection and transaction of one `async with` block; its session, once asked for."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        connection: AsyncConnection,
        driver: asyncpg.Connection,
        *,
        owned: bool = True,
    ) -> None:
        self.session_factory = session_factory
        self.connection = connection
        self.owned = owned  # checked out by this block (else borrowed from the caller)
        self.driver = driver
        self.transaction: Transaction = driver.transaction()
        self.open = False  # the transaction started and is not finished yet
        self.inbox = SqlInbox(driver)
        self.outbox: Outbox | None = None
        self.command_status: CommandStatuses | None = None
        self.created_session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        """The block's session, bound to its connection (made on first use only)."""
        if self.created_session is None:
            self.created_session = self.session_factory(bind=self.connection)
        return self.created_session


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
    def outbox(self) -> Outbox:
        """The outbox, in this unit's transaction."""
        outbox = self._current().outbox
        if outbox is None:  # pragma: no cover  (attached on entry)
            raise RuntimeError("the outbox is not attached")
        return outbox

    @property
    def command_status(self) -> CommandStatuses:
        """Command outcomes, in this unit's transaction."""
        statuses = self._current().command_status
        if statuses is None:  # pragma: no cover  (attached on entry)
            raise RuntimeError("the command statuses are not attached")
        return statuses

    async def __aenter__(self) -> Self:
        if self._active is not None:
            raise RuntimeError("this unit of work is already in use; make one per message")
        bind = self._session_factory.kw["bind"]
        owned = not isinstance(bind, AsyncConnection)  # else: a test's outer transaction
        connection = await bind.connect() if owned else bind
        try:
            active = await _begin(self._session_factory, connection, owned=owned)
        except BaseException:
            if owned:
                await connection.close()
            raise
        self._active = active
        self.attach_repositories(active.session)
        active.outbox = SqlOutbox(active.session, self._clock)
        active.command_status = SqlCommandStatuses(active.session, active.driver)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        active, self._active = self._current(), None
        try:
            await _end(active, commit=False)
        finally:
            if active.created_session is not None:
                await active.created_session.close()
            if active.owned:
                await active.connection.close()  # back to the pool (unless invalidated)

    async def commit(self) -> None:
        """Commit state, inbox, command status and outbox rows in one transaction."""
        await _end(self._current(), commit=True)

    async def rollback(self) -> None:
        """Discard every write of this block."""
        await _end(self._current(), commit=False)

    def _current(self) -> _Active:
        if self._active is None:
            raise RuntimeError("use the unit of work inside `async with uow:`")
        return self._active


async def _begin(
    session_factory: async_sessionmaker[AsyncSession], connection: AsyncConnection, *, owned: bool
) -> _Active:
    """Start the block's transaction on `connection`, with a session bound to it.

    On a borrowed connection inside an outer transaction, the block's becomes a savepoint
    (SQLAlchemy's driver opens the outer one lazily: one statement makes it real first).
    """
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None:  # pragma: no cover  (a checked-out connection has one)
        raise RuntimeError("the pooled connection has no driver connection")
    if not owned and connection.in_transaction() and not driver.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    active = _Active(session_factory, connection, driver, owned=owned)
    await active.transaction.start()
    active.open = True
    return active


async def _end(active: _Active, *, commit: bool) -> None:
    """Finish the session's savepoint (if any) and the transaction; a no-op once finished.

    If the connection is left inside a transaction (a failed COMMIT or ROLLBACK, a dead
    socket), it is invalidated: the pool never hands out a connection mid-transaction.
    """
    session = active.created_session
    try:
        if commit:
            if session is not None:
                await session.commit()
            if active.open:
                active.open = False
                await active.transaction.commit()
        else:
            if session is not None:
                await session.rollback()
            if active.open:
                active.open = False
                await active.transaction.rollback()
    finally:
        if active.owned and (active.driver.is_in_transaction() or active.driver.is_closed()):
            await active.connection.invalidate()
