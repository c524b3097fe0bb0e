"""The relay's SQL: read the chain's tail, claim and chain pending rows, mark them published.

Every statement runs on the one asyncpg connection that holds the relay's advisory lock
(see `producers.relay.loop`), serialized by an `asyncio.Lock` so the claimer and the marker
can share it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from events.catalog import stored_partition_key
from infra.db.tables import CHAIN_COLUMNS, OUTBOX
from infra.eventlog.chain import GENESIS, canonical_bytes, link_hash

if TYPE_CHECKING:
    from datetime import datetime


class LostLeadershipError(RuntimeError):
    """Rows this relay expected to position were positioned by someone else."""


@dataclass(slots=True)  # not frozen: built once per event on the hot path; never mutated
class ChainedEvent:
    """An outbox row with its position and chain link: what the relay publishes."""

    id: str  # UUIDs as PostgreSQL's text form (lowercase, hyphenated)
    position: int
    prev_hash: bytes
    hash: bytes
    body: bytes  # the canonical bytes (infra.eventlog.chain): the AMQP body
    type: str
    exchange: str
    routing_key: str
    occurred_at: datetime
    correlation_id: str
    traceparent: str | None
    aggregate_type: str | None
    aggregate_id: str | None
    aggregate_version: int | None
    partition_key: str  # ordered consumers' key (`events.catalog.partition_key`)
    kind: str  # event | command
    project_id: str | None


# The partial index `outbox_unpublished` (seq WHERE published_at IS NULL) serves both scans:
# its size is the backlog, never the log, so a claim costs the same at 10 k or 100 M events.
# UUIDs come as text: they are needed as text (canonical bytes, AMQP properties) anyway.
# A claimed row is what a unit of work wrote (`OUTBOX.written`); an unmarked one also has its
# chain link. Only names from the table's description are formatted in.
_ROW = OUTBOX.select_list(OUTBOX.written, uuids_as_text=True)
_LINKED = OUTBOX.select_list((*OUTBOX.written, *CHAIN_COLUMNS), uuids_as_text=True)
_CLAIM = f"""SELECT {_ROW}
    FROM {OUTBOX.name} WHERE published_at IS NULL AND position IS NULL ORDER BY seq LIMIT $1"""  # noqa: S608
_UNMARKED = f"""SELECT {_LINKED}
    FROM {OUTBOX.name} WHERE published_at IS NULL AND position IS NOT NULL ORDER BY position"""  # noqa: S608
_TAIL = f"""SELECT position, hash FROM {OUTBOX.name}
    WHERE position IS NOT NULL ORDER BY position DESC LIMIT 1"""  # noqa: S608
# One statement, one round trip, one durable commit. All or nothing: unless every row was
# still unpositioned, the division by zero aborts the statement and every assignment in it.
_ASSIGN = f"""WITH assigned AS (
        UPDATE {OUTBOX.name} AS o
        SET position = u.position, prev_hash = u.prev_hash, hash = u.hash
        FROM unnest($1::uuid[], $2::bigint[], $3::bytea[], $4::bytea[])
            AS u(id, position, prev_hash, hash)
        WHERE o.id = u.id AND o.position IS NULL
        RETURNING 1
    )
    SELECT 1 / (count(*) = $5)::int FROM assigned"""  # noqa: S608
# Marks need no fsync of their own: a mark lost in a crash only means a republication (a
# duplicate with the same id and position). Positions, by contrast, commit synchronously:
# they must never be published before they are durable. One round trip, literals are ints.
_MARK = f"""BEGIN; SET LOCAL synchronous_commit = off;
    UPDATE {OUTBOX.name} SET published_at = now()
    WHERE position BETWEEN {{first:d}} AND {{last:d}} AND published_at IS NULL;
    COMMIT"""  # noqa: S608


def _chained(row: asyncpg.Record, position: int, prev_hash: bytes, body: bytes) -> ChainedEvent:
    return ChainedEvent(
        id=row["id"],
        position=position,
        prev_hash=prev_hash,
        hash=link_hash(prev_hash, body),
        body=body,
        type=row["type"],
        exchange=row["exchange"],
        routing_key=row["routing_key"],
        occurred_at=row["occurred_at"],
        correlation_id=row["correlation_id"],
        traceparent=row["traceparent"],
        aggregate_type=row["aggregate_type"],
        aggregate_id=row["aggregate_id"],
        aggregate_version=row["aggregate_version"],
        partition_key=stored_partition_key(
            row["type"], row["aggregate_id"], _document(row["data"]), row["id"]
        ),
        kind=row["kind"],
        project_id=row["project_id"],
    )


def _document(data: Any) -> dict[str, Any]:  # noqa: ANN401  (JSONB: decoded, or its text)
    return json.loads(data) if isinstance(data, str) else dict(data)


class RelayStore:
    """The outbox as the leader relay sees it; holds the chain's tail in memory."""

    def __init__(
        self, connection: asyncpg.Connection, marks: asyncpg.Connection | None = None
    ) -> None:
        self._connection = connection  # the one holding the lock: positions go through it
        self._lock = asyncio.Lock()
        # Marks may use a connection of their own, so they never hold up a claim; marking
        # needs no fence (a stale leader marking what the broker confirmed says the truth).
        self._marks = marks or connection
        self._marks_lock = asyncio.Lock() if marks is not None else self._lock
        self.last_position = 0
        self.last_hash = GENESIS

    async def load_tail(self) -> None:
        """Read the last assigned position and hash (the chain continues from there)."""
        async with self._lock:
            row = await self._connection.fetchrow(_TAIL)
        if row is not None:
            self.last_position, self.last_hash = row["position"], bytes(row["hash"])

    async def unmarked(self) -> list[ChainedEvent]:
        """Rows positioned by an earlier leader (or term) but not marked published, in order."""
        async with self._lock:
            rows = await self._connection.fetch(_UNMARKED)
        events = []
        for row in rows:
            body = canonical_bytes(row, row["position"])
            event = _chained(row, row["position"], bytes(row["prev_hash"]), body)
            if event.hash != bytes(row["hash"]):
                raise RuntimeError(f"stored hash of position {event.position} does not match")
            events.append(event)
        return events

    async def claim(self, limit: int) -> list[ChainedEvent]:
        """Give the oldest visible pending rows the next positions and links, and commit."""
        async with self._lock:
            rows = await self._connection.fetch(_CLAIM, limit)
            if not rows:
                return []
            events = self._chain(rows)
            try:
                await self._connection.execute(
                    _ASSIGN,
                    [e.id for e in events],
                    [e.position for e in events],
                    [e.prev_hash for e in events],
                    [e.hash for e in events],
                    len(events),
                )
            except asyncpg.DivisionByZeroError as exc:
                raise LostLeadershipError("rows to position were positioned meanwhile") from exc
        self.last_position, self.last_hash = events[-1].position, events[-1].hash
        return events

    def _chain(self, rows: list[asyncpg.Record]) -> list[ChainedEvent]:
        position, prev_hash, events = self.last_position, self.last_hash, []
        for row in rows:
            position += 1
            event = _chained(row, position, prev_hash, canonical_bytes(row, position))
            events.append(event)
            prev_hash = event.hash
        return events

    async def mark(self, first: int, last: int) -> None:
        """Record that positions first..last were confirmed by the broker."""
        async with self._marks_lock:
            await self._marks.execute(_MARK.format(first=int(first), last=int(last)))
