"""Repositories: aggregates <-> rows of `aggregate_state`, with optimistic concurrency.

A row is `(aggregate_type, aggregate_id, version, state)`; `state` is `Aggregate.to_state()`
and `Aggregate.from_state(state, version=...)` rebuilds it. Saving never overwrites blindly:

- a new aggregate (loaded from nothing, `persisted_version == 0`) is INSERTed; if another
  transaction created the same id first, that insert conflicts: `ConcurrencyError`;
- a loaded one is UPDATEd `WHERE version = <the version read>`; if another transaction saved
  it in between, 0 rows match: `ConcurrencyError`.

`StateRows` may write at once or keep the writes for the unit of work's commit (PostgreSQL's,
`infra.db.pg_uow`): the conflict is then raised by the commit.

`ConcurrencyError` is transient: the consumer runtime retries the whole message with a fresh
unit of work, which then reads the winner's state and decides again.

`Aggregates` is what a unit of work exposes: one `Repository` per aggregate type, sharing an
identity map and the order aggregates were touched in, so `save()` appends their events to the
outbox in the order they happened (a workflow's `WorkflowStarted` before its `TaskCreated`s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from domain.aggregate import Aggregate
from domain.errors import UNPROCESSABLE, DomainError
from domain.notification import Notification
from domain.persona import Persona
from domain.plan import Plan
from domain.project import Project
from domain.task import Task
from domain.workflow import Workflow
from infra.db.errors import ConcurrencyError as ConcurrencyError  # noqa: PLC0414  (re-export)

if TYPE_CHECKING:
    import uuid

    from events import DomainEvent
    from infra.message_context import MessageContext

A = TypeVar("A", bound=Aggregate)


class AggregateNotFoundError(DomainError):
    """A command names an aggregate that does not exist (`<type>-not-found`): input, 422."""

    status = UNPROCESSABLE

    def __init__(self, aggregate_type: str, aggregate_id: uuid.UUID) -> None:
        super().__init__(f"{aggregate_type}-not-found", f"no {aggregate_type} {aggregate_id}")


class AggregateExistsError(DomainError):
    """A command would create an aggregate whose id is taken (`<type>-exists`)."""

    def __init__(self, aggregate_type: str, aggregate_id: uuid.UUID) -> None:
        super().__init__(f"{aggregate_type}-exists", f"{aggregate_type} {aggregate_id} exists")


class EventSink(Protocol):
    """Where saved aggregates' events go: a unit of work's outbox."""

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
        """Create a row; `ConcurrencyError` (now or at commit) if the id is taken."""
        ...

    async def update(
        self,
        aggregate_type: str,
        aggregate_id: uuid.UUID,
        read_version: int,
        version: int,
        state: dict[str, Any],
    ) -> None:
        """Replace a row still at `read_version`; `ConcurrencyError` (now or at commit) if not."""
        ...


# Fixed SQL on a raw asyncpg connection: asyncpg prepares it once per connection.
LOAD_SQL = (
    "SELECT version, state FROM aggregate_state WHERE aggregate_type = $1 AND aggregate_id = $2"
)


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

    @property
    def pending(self) -> bool:
        """Whether a touched aggregate recorded events not saved yet."""
        return any(aggregate.pending_events for aggregate in self._touched)

    async def save(self, outbox: EventSink, context: MessageContext) -> list[uuid.UUID]:
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
