"""Repositories: aggregates <-> rows of `aggregate_state`, with optimistic concurrency.

A row is `(aggregate_type, aggregate_id, version, state)`; `state` is `Aggregate.to_state()`
and `Aggregate.from_state(state, version=...)` rebuilds it. Saving never overwrites blindly:

- a new aggregate (loaded from nothing, `persisted_version == 0`) is INSERTed; if another
  transaction created the same id first, the primary key refuses it: `ConcurrencyError`;
- a loaded one is UPDATEd `WHERE version = <the version read>`; if another transaction saved
  it in between, 0 rows match: `ConcurrencyError`.

`ConcurrencyError` is transient: the consumer runtime retries the whole message with a fresh
unit of work, which then reads the winner's state and decides again.

`Aggregates` is what a unit of work exposes: one `Repository` per aggregate type, sharing an
identity map and the order aggregates were touched in, so `save()` appends their events to the
outbox in the order they happened (a workflow's `WorkflowStarted` before its `TaskCreated`s).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from domain.aggregate import Aggregate
from domain.errors import DomainError
from domain.notification import Notification
from domain.persona import Persona
from domain.plan import Plan
from domain.project import Project
from domain.task import Task
from domain.workflow import Workflow
from infra.db.prepared import PreparedCommandStatuses, PreparedOutbox, flush
from infra.db.uow import SqlUnitOfWork

if TYPE_CHECKING:
    import uuid

    import asyncpg

    from infra.db.uow import CommandStatuses, Outbox
    from infra.message_context import MessageContext

A = TypeVar("A", bound=Aggregate)


class ConcurrencyError(Exception):
    """Another transaction changed (or created) the aggregate since it was read: try again."""

    def __init__(self, aggregate_type: str, aggregate_id: uuid.UUID, expected: int) -> None:
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        self.expected = expected
        super().__init__(f"{aggregate_type} {aggregate_id}: version {expected} is stale")


class AggregateNotFoundError(DomainError):
    """A command names an aggregate that does not exist (`<type>-not-found`)."""

    def __init__(self, aggregate_type: str, aggregate_id: uuid.UUID) -> None:
        super().__init__(f"{aggregate_type}-not-found", f"no {aggregate_type} {aggregate_id}")


class AggregateExistsError(DomainError):
    """A command would create an aggregate whose id is taken (`<type>-exists`)."""

    def __init__(self, aggregate_type: str, aggregate_id: uuid.UUID) -> None:
        super().__init__(f"{aggregate_type}-exists", f"{aggregate_type} {aggregate_id} exists")


class StateRows(Protocol):
    """Where aggregate state rows live (PostgreSQL here; a dict in the unit tests)."""

    async def load(
        self, aggregate_type: str, aggregate_id: uuid.UUID
    ) -> tuple[int, dict[str, Any]] | None:
        """The stored `(version, state)`, or None."""
        ...

    async def insert(
        self, aggregate_type: str, aggregate_id: uuid.UUID, version: int, state: dict[str, Any]
    ) -> None:
        """Create a row; `ConcurrencyError` if the id is taken."""
        ...

    async def update(
        self,
        aggregate_type: str,
        aggregate_id: uuid.UUID,
        read_version: int,
        version: int,
        state: dict[str, Any],
    ) -> None:
        """Replace a row still at `read_version`; `ConcurrencyError` otherwise."""
        ...


# Fixed SQL on the unit of work's raw asyncpg connection: asyncpg prepares each statement
# once per connection; through SQLAlchemy each execution cost more CPU than its round trip.
LOAD_SQL = (
    "SELECT version, state FROM aggregate_state WHERE aggregate_type = $1 AND aggregate_id = $2"
)
INSERT_SQL = (
    "INSERT INTO aggregate_state (aggregate_type, aggregate_id, version, state)"
    " VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (aggregate_type, aggregate_id) DO NOTHING RETURNING version"
)
UPDATE_SQL = (
    "UPDATE aggregate_state SET version = $4, state = $5, updated_at = now()"
    " WHERE aggregate_type = $1 AND aggregate_id = $2 AND version = $3 RETURNING version"
)


class SqlStateRows:
    """`aggregate_state` rows in the unit of work's transaction (its raw connection)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def load(
        self, aggregate_type: str, aggregate_id: uuid.UUID
    ) -> tuple[int, dict[str, Any]] | None:
        """The stored `(version, state)`, or None."""
        row = await self._connection.fetchrow(LOAD_SQL, aggregate_type, aggregate_id)
        return None if row is None else (int(row[0]), dict(row[1]))

    async def insert(
        self, aggregate_type: str, aggregate_id: uuid.UUID, version: int, state: dict[str, Any]
    ) -> None:
        """INSERT ... ON CONFLICT DO NOTHING; no row inserted means someone else created it."""
        text = json.dumps(state)
        if (
            await self._connection.fetchval(INSERT_SQL, aggregate_type, aggregate_id, version, text)
            is None
        ):
            raise ConcurrencyError(aggregate_type, aggregate_id, 0)

    async def update(
        self,
        aggregate_type: str,
        aggregate_id: uuid.UUID,
        read_version: int,
        version: int,
        state: dict[str, Any],
    ) -> None:
        """UPDATE ... WHERE version = read_version; 0 rows means it moved on."""
        params = (aggregate_type, aggregate_id, read_version, version, json.dumps(state))
        if await self._connection.fetchval(UPDATE_SQL, *params) is None:
            raise ConcurrencyError(aggregate_type, aggregate_id, read_version)


class Repository(Generic[A]):
    """Loads and tracks the aggregates of one type; `Aggregates.save()` writes them."""

    def __init__(self, model: type[A], rows: StateRows, touched: list[Aggregate]) -> None:
        self.model = model
        self._rows = rows
        self._touched = touched
        self._seen: dict[uuid.UUID, A] = {}

    async def get(self, aggregate_id: uuid.UUID) -> A | None:
        """The aggregate as stored (or as already loaded in this unit), or None."""
        if aggregate_id in self._seen:
            return self._seen[aggregate_id]
        stored = await self._rows.load(self.model.aggregate_type, aggregate_id)
        if stored is None:
            return None
        aggregate = self.model.from_state(stored[1], version=stored[0])
        self._track(aggregate)
        return aggregate

    async def require(self, aggregate_id: uuid.UUID) -> A:
        """The aggregate, or `AggregateNotFoundError` (the command is rejected)."""
        aggregate = await self.get(aggregate_id)
        if aggregate is None:
            raise AggregateNotFoundError(self.model.aggregate_type, aggregate_id)
        return aggregate

    async def require_absent(self, aggregate_id: uuid.UUID) -> None:
        """Nothing, or `AggregateExistsError` if the id is taken (the command is rejected)."""
        if await self.get(aggregate_id) is not None:
            raise AggregateExistsError(self.model.aggregate_type, aggregate_id)

    def add(self, aggregate: A) -> None:
        """Track a new aggregate; it is INSERTed on save."""
        if aggregate.id in self._seen:
            raise ValueError(f"{self.model.aggregate_type} {aggregate.id} is already tracked")
        self._track(aggregate)

    def _track(self, aggregate: A) -> None:
        self._seen[aggregate.id] = aggregate
        self._touched.append(aggregate)


class Aggregates:
    """Every repository of one unit of work; `save()` persists what changed, in order."""

    def __init__(self, rows: StateRows) -> None:
        self._rows = rows
        self._touched: list[Aggregate] = []
        self.personas = Repository(Persona, rows, self._touched)
        self.projects = Repository(Project, rows, self._touched)
        self.plans = Repository(Plan, rows, self._touched)
        self.workflows = Repository(Workflow, rows, self._touched)
        self.tasks = Repository(Task, rows, self._touched)
        self.notifications = Repository(Notification, rows, self._touched)

    async def save(self, outbox: Outbox, context: MessageContext) -> list[uuid.UUID]:
        """Write changed aggregates and append their events; return the event ids in order."""
        event_ids: list[uuid.UUID] = []
        for aggregate in self._touched:
            if not aggregate.pending_events:
                continue
            read_version, state = aggregate.persisted_version, aggregate.to_state()
            kind, key = aggregate.aggregate_type, aggregate.id
            if read_version == 0:
                await self._rows.insert(kind, key, aggregate.version, state)
            else:
                await self._rows.update(kind, key, read_version, aggregate.version, state)
            for recorded in aggregate.pull_events():
                event_id = await outbox.add_event(
                    recorded.event,
                    aggregate_id=recorded.aggregate_id,
                    aggregate_version=recorded.aggregate_version,
                    context=context,
                )
                event_ids.append(event_id)
        return event_ids


class SqlAggregateUnitOfWork(SqlUnitOfWork):
    """A `SqlUnitOfWork` with `aggregates`: the repositories, in the same transaction.

    Everything runs as prepared SQL on the block's raw connection, without a session: state
    rows as they are saved; outbox rows and the command status kept and written by one
    statement just before COMMIT (`infra.db.prepared`).
    """

    _aggregates: Aggregates | None = None
    _writes: tuple[PreparedOutbox, PreparedCommandStatuses] | None = None

    def attach_block(self, driver: asyncpg.Connection) -> tuple[Outbox, CommandStatuses]:
        """Fresh repositories (and identity map), outbox and statuses on the raw connection."""
        self._aggregates = Aggregates(SqlStateRows(driver))
        self._writes = (PreparedOutbox(self._clock), PreparedCommandStatuses(driver))
        return self._writes

    async def commit(self) -> None:
        """Write the kept outbox rows and status, then commit everything at once."""
        if self._writes is not None:
            await flush(self.driver, *self._writes)
        await super().commit()

    @property
    def aggregates(self) -> Aggregates:
        """The repositories of the open block."""
        self._current()  # raises outside `async with`
        if self._aggregates is None:  # pragma: no cover  (attach_block always ran)
            raise RuntimeError("repositories are not attached")
        return self._aggregates
