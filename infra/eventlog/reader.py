"""Read the event log: published outbox rows (those with a `position`), in position order.

Every read is keyset pagination on the unique `position` column: a batch is
`WHERE position > <last seen> ORDER BY position LIMIT n`, each in its own short
transaction, so a stream over millions of events holds one batch in memory, never a
server-side cursor or an OFFSET. Rows are immutable once positioned, so batches never see
a row change between them; a stream simply stops at the log's end as it was when the last
batch ran.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select

from infra.db.outbox import ENVELOPE_COLUMNS, envelope_from_row
from infra.db.tables import CHAIN_COLUMNS, outbox

if TYPE_CHECKING:
    import uuid
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    from sqlalchemy import ColumnElement, RowMapping
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from events import Envelope, Message

DEFAULT_BATCH_SIZE = 500
MAX_PAGE_SIZE = 1_000


@dataclass(frozen=True, kw_only=True)
class EventFilter:
    """Which published events to read; each field narrows the slice, None means any.

    The log holds the commands process managers send through the outbox too (audit facts,
    on the hash chain): they are read only when `kinds` asks for them.
    """

    after: int | None = None  # position, exclusive
    to: int | None = None  # position, inclusive
    kinds: tuple[str, ...] = ("event",)  # the catalog's kinds: event, command
    project_id: uuid.UUID | None = None  # the payload's project
    aggregate_type: str | None = None
    aggregate_id: uuid.UUID | None = None
    types: tuple[str, ...] = ()
    correlation_id: uuid.UUID | None = None
    since: datetime | None = None  # occurred_at, inclusive
    until: datetime | None = None  # occurred_at, exclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        """The SQL conditions of this filter (published rows only)."""
        c = outbox.c
        found: list[ColumnElement[bool]] = [c.position.is_not(None)]
        equal = (
            (c.aggregate_type, self.aggregate_type),
            (c.aggregate_id, self.aggregate_id),
            (c.correlation_id, self.correlation_id),
            (c.project_id, self.project_id),
        )
        found += [column == value for column, value in equal if value is not None]
        if self.after is not None:
            found.append(c.position > self.after)
        if self.to is not None:
            found.append(c.position <= self.to)
        if self.since is not None:
            found.append(c.occurred_at >= self.since)
        if self.until is not None:
            found.append(c.occurred_at < self.until)
        if self.types:
            found.append(c.type.in_(self.types))
        if set(self.kinds) != {"event", "command"}:
            found.append(c.kind.in_(self.kinds))
        return found


@dataclass(frozen=True)
class LoggedEvent:
    """One event-log entry: the envelope with its position and hash-chain link."""

    envelope: Envelope[Message]
    prev_hash: bytes | None
    hash: bytes | None
    published_at: datetime | None

    @property
    def position(self) -> int:
        """The event's global position."""
        position = self.envelope.position
        if position is None:  # the reader only returns positioned rows
            raise RuntimeError(f"event {self.envelope.id} has no position")
        return position


@dataclass(frozen=True)
class EventPage:
    """One page of the log and the cursor to the next (None on the last page)."""

    items: list[Envelope[Message]]
    next_after: int | None


class EventLogReader:
    """Audit, replay, export and the HTTP API read the log through this."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = session_factory

    async def stream(
        self, where: EventFilter | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[Envelope[Message]]:
        """Every matching envelope in position order, fetched `batch_size` at a time."""
        async for record in self.records(where, batch_size=batch_size):
            yield record.envelope

    async def records(
        self, where: EventFilter | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[LoggedEvent]:
        """Like `stream`, with each entry's hash-chain link (for export and verification)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        where = where or EventFilter()
        after = where.after
        while True:
            rows = await self._batch(where, after, batch_size)
            for row in rows:
                yield _logged(row)
            if len(rows) < batch_size:
                return
            after = rows[-1]["position"]

    async def page(self, where: EventFilter | None = None, *, limit: int = 100) -> EventPage:
        """At most `limit` matching envelopes and the `after` cursor of the next page."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        where = where or EventFilter()
        rows = await self._batch(where, where.after, limit + 1)
        items = [envelope_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return EventPage(items=items, next_after=items[-1].position if more else None)

    async def get(self, event_id: uuid.UUID) -> LoggedEvent | None:
        """One published event by id, or None (unknown or not yet published)."""
        query = _columns().where(outbox.c.id == event_id, outbox.c.position.is_not(None))
        async with self._sessions() as session:
            row = (await session.execute(query)).mappings().one_or_none()
        return _logged(row) if row is not None else None

    async def _batch(
        self, where: EventFilter, after: int | None, limit: int
    ) -> Sequence[RowMapping]:
        conditions = replace(where, after=after).conditions()
        query = _columns().where(*conditions).order_by(outbox.c.position).limit(limit)
        async with self._sessions() as session:
            rows: Sequence[RowMapping] = (await session.execute(query)).mappings().all()
        return rows


# The envelope, its chain link and when it was published.
_COLUMNS = tuple(dict.fromkeys((*ENVELOPE_COLUMNS, *CHAIN_COLUMNS, "published_at")))


def _columns() -> Select[Any]:
    return select(*(outbox.c[name] for name in _COLUMNS))


def _logged(row: RowMapping) -> LoggedEvent:
    return LoggedEvent(
        envelope=envelope_from_row(row),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        published_at=row["published_at"],
    )
