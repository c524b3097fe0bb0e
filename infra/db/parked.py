"""The parked-message records in PostgreSQL: filtered pages, grouped counts, state changes.

`SqlParkedMessages` reads and changes `parked_messages` (`infra.db.parked_tables`). A
discard changes the row and appends its `ParkedMessageDiscarded` event to the outbox in ONE
transaction (and, for an ordered consumer, drops the parked row of `consumer_held`, so the
key flows again): the audit log records a discard if and only if it happened. State changes
are conditional (`state = 'parked'`, and a re-drive names the `parked_at` it read), so a
message parked again meanwhile keeps its new record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from events.parked import ParkedMessageDiscarded
from infra.db.engine import driver_of
from infra.db.outbox import event_envelope, outbox_row
from infra.db.parked_tables import DISCARDED, PARKED, REDRIVEN
from infra.db.tables import OUTBOX

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from datetime import datetime

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.clock import Clock
    from infra.message_context import MessageContext

# The namespace of a parked message's aggregate id (fixed forever: it keys its audit events).
PARKED_NAMESPACE = uuid.UUID("2f7d3c1e-8a4b-5c6d-9e0f-7061726b6564")

_SUMMARY = (
    "consumer, message_id, routing_key, message_type, error_type, reason, parked_at, state,"
    " resolved_at, resolved_by, redrive_exchange, redrive_routing_key, parking_queue"
)
_FULL = f"{_SUMMARY}, body, headers"
_GET = f"SELECT {_FULL} FROM parked_messages WHERE message_id = $1"  # noqa: S608  (fixed names)
_CONSUMERS = "SELECT DISTINCT consumer FROM parked_messages"
_STATES = (
    "SELECT message_id, state FROM parked_messages WHERE consumer = $1 AND message_id = ANY($2)"
)
_REDRIVEN = (
    "UPDATE parked_messages SET state = $4, resolved_at = now(), resolved_by = $5"
    " WHERE consumer = $1 AND message_id = $2 AND state = 'parked' AND parked_at = $3"
)
_DISCARD = (
    "UPDATE parked_messages SET state = $3, resolved_at = $4, resolved_by = $5"
    " WHERE consumer = $1 AND message_id = $2 AND state = 'parked'"
)
_UNHOLD = "DELETE FROM consumer_held WHERE consumer = $1 AND message_id = $2 AND parked"
_APPLIED = "SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2"
_LAST_VERSION = (
    f"SELECT coalesce(max(aggregate_version), 0) FROM {OUTBOX.name}"  # noqa: S608
    " WHERE aggregate_id = $1"
)
_APPEND = OUTBOX.insert_sql(1)


@dataclass(frozen=True)
class ParkedFilter:
    """Which records: by consumer, error type, state (None: any) and parking time."""

    consumer: str | None = None
    error_type: str | None = None
    state: str | None = PARKED
    parked_before: datetime | None = None  # older than
    parked_after: datetime | None = None  # younger than


@dataclass(frozen=True)
class ParkedRecord:
    """One parked message as recorded (`body` and `headers` only when read one by one)."""

    consumer: str
    message_id: str
    routing_key: str
    message_type: str | None
    error_type: str
    reason: str
    parked_at: datetime
    state: str
    resolved_at: datetime | None
    resolved_by: str | None
    redrive_exchange: str
    redrive_routing_key: str
    parking_queue: str
    body: bytes | None = None
    headers: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ErrorGroup:
    """The records of one error type: how many, of which consumers, oldest and newest."""

    error_type: str
    count: int
    consumers: tuple[str, ...]
    oldest: datetime
    newest: datetime


Cursor = tuple["datetime", str, str]  # (parked_at, consumer, message_id) of the last row


def parked_aggregate_id(consumer: str, message_id: str) -> uuid.UUID:
    """The aggregate id of one parked message's audit events."""
    return uuid.uuid5(PARKED_NAMESPACE, f"{consumer}/{message_id}")


def _where(which: ParkedFilter, args: list[Any]) -> str:
    """The WHERE clause of `which`, appending its parameters to `args`."""
    clauses = []
    for column, value, op in (
        ("consumer", which.consumer, "="),
        ("error_type", which.error_type, "="),
        ("state", which.state, "="),
        ("parked_at", which.parked_before, "<"),
        ("parked_at", which.parked_after, ">"),
    ):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} {op} ${len(args)}")
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


def _record(row: asyncpg.Record) -> ParkedRecord:
    fields = {name: row[name] for name in _SUMMARY.split(", ")}
    if "body" in row:
        headers = row["headers"]
        fields["body"] = bytes(row["body"])
        fields["headers"] = json.loads(headers) if isinstance(headers, str) else dict(headers)
    return ParkedRecord(**fields)


class SqlParkedMessages:
    """The console's store: every method raises the driver's error when PostgreSQL cannot."""

    def __init__(self, engine: AsyncEngine, *, timeout: float = 10.0) -> None:
        self._engine = engine
        self._timeout = timeout

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with asyncio.timeout(self._timeout), self._engine.connect() as connection:
            driver = await driver_of(connection)
            async with driver.transaction():
                yield driver

    async def page(
        self, which: ParkedFilter, *, after: Cursor | None, limit: int
    ) -> list[ParkedRecord]:
        """Up to `limit` records of `which` in parking order, after the `after` row."""
        args: list[Any] = []
        where = _where(which, args)
        if after is not None:
            args.extend(after)
            n = len(args)
            keyset = f"(parked_at, consumer, message_id) > (${n - 2}, ${n - 1}, ${n})"
            where = f"{where} AND {keyset}" if where else f" WHERE {keyset}"
        args.append(limit)
        sql = (
            f"SELECT {_SUMMARY} FROM parked_messages{where}"  # noqa: S608  (fixed names)
            f" ORDER BY parked_at, consumer, message_id LIMIT ${len(args)}"
        )
        async with self._transaction() as db:
            return [_record(row) for row in await db.fetch(sql, *args)]

    async def full(self, which: ParkedFilter, *, limit: int) -> list[ParkedRecord]:
        """Up to `limit` records of `which`, with bodies and headers (for a bulk re-drive)."""
        args: list[Any] = []
        where = _where(which, args)
        args.append(limit)
        sql = (
            f"SELECT {_FULL} FROM parked_messages{where}"  # noqa: S608  (fixed names)
            f" ORDER BY parked_at, consumer, message_id LIMIT ${len(args)}"
        )
        async with self._transaction() as db:
            return [_record(row) for row in await db.fetch(sql, *args)]

    async def groups(self, which: ParkedFilter) -> list[ErrorGroup]:
        """The records of `which` grouped by error type, the largest group first."""
        args: list[Any] = []
        sql = (
            "SELECT error_type, count(*) AS n, array_agg(DISTINCT consumer) AS consumers,"  # noqa: S608  (fixed names)
            " min(parked_at) AS oldest, max(parked_at) AS newest"
            f" FROM parked_messages{_where(which, args)}"
            " GROUP BY error_type ORDER BY n DESC, error_type"
        )
        async with self._transaction() as db:
            rows = await db.fetch(sql, *args)
        return [
            ErrorGroup(
                row["error_type"],
                row["n"],
                tuple(sorted(row["consumers"])),
                row["oldest"],
                row["newest"],
            )
            for row in rows
        ]

    async def get(self, message_id: str) -> list[ParkedRecord]:
        """The records of one message id (one per consumer that parked it), with bodies."""
        async with self._transaction() as db:
            return [_record(row) for row in await db.fetch(_GET, message_id)]

    async def consumers(self) -> set[str]:
        """Every consumer with a record."""
        async with self._transaction() as db:
            return {row["consumer"] for row in await db.fetch(_CONSUMERS)}

    async def states(self, consumer: str, message_ids: Sequence[str]) -> dict[str, str]:
        """The state of each of these records of `consumer` (ids without one left out)."""
        async with self._transaction() as db:
            rows = await db.fetch(_STATES, consumer, list(message_ids))
        return {row["message_id"]: row["state"] for row in rows}

    async def applied(self, consumer: str, message_id: str) -> bool:
        """Whether the consumer's inbox holds the message (it was applied already)."""
        try:
            key = uuid.UUID(message_id)
        except ValueError:
            return False
        async with self._transaction() as db:
            return await db.fetchval(_APPLIED, consumer, key) is not None

    async def mark_redriven(self, record: ParkedRecord, *, by: str) -> bool:
        """`redriven`, unless it was parked again since `record` was read; whether it changed."""
        async with self._transaction() as db:
            status = await db.execute(
                _REDRIVEN, record.consumer, record.message_id, record.parked_at, REDRIVEN, by
            )
        return status == "UPDATE 1"

    async def discard(
        self,
        record: ParkedRecord,
        *,
        reason: str,
        context: MessageContext,
        clock: Clock,
    ) -> bool:
        """Discard a parked record and append its audit event, at once; False: not parked."""
        consumer, message_id = record.consumer, record.message_id
        async with self._transaction() as db:
            now = clock()
            by = context.actor.principal
            status = await db.execute(_DISCARD, consumer, message_id, DISCARDED, now, by)
            if status != "UPDATE 1":
                return False
            with contextlib.suppress(ValueError):
                await db.execute(_UNHOLD, consumer, uuid.UUID(message_id))
            aggregate_id = parked_aggregate_id(consumer, message_id)
            version = int(await db.fetchval(_LAST_VERSION, aggregate_id)) + 1
            event = ParkedMessageDiscarded(message_id=message_id, consumer=consumer, reason=reason)
            envelope = event_envelope(
                event,
                aggregate_id=aggregate_id,
                aggregate_version=version,
                context=context,
                clock=clock,
            )
            await db.execute(_APPEND, *OUTBOX.arrays([outbox_row(envelope)]))
        return True
