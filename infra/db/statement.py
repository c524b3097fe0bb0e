"""The commit statement: every write of one or more units of work, in ONE statement.

PostgreSQL runs a single statement as its own transaction, so this statement is a unit's
commit: all of it is durable, or none of it; no BEGIN and no COMMIT round trips, nothing
held open while a handler decides. It is built from the table descriptions (`infra.db.table`):
one `INSERT ... SELECT ... FROM unnest(...)` per table that has rows (the inbox, created
aggregate states, the outbox, the command status, any extra table), the version-checked
update of changed states, and the ordered consumers' hold guard. The text depends only on
which of these are present, so it is cached per combination and asyncpg prepares each text
once per connection. Every parameter is an array: several units are written together by
concatenating their rows (group commit, `infra.db.group_commit`).

What the writes read was read optimistically; the statement checks it:

- the inbox row is inserted `ON CONFLICT DO NOTHING`: a copy of the message applied before
  (a redelivery, a second publish) or concurrently leaves it out;
- a new aggregate is inserted `ON CONFLICT DO NOTHING`: one created meanwhile leaves it out;
- a loaded aggregate is updated `WHERE version = <the version read>`: one changed meanwhile
  (READ COMMITTED re-checks the row a concurrent writer committed) leaves it out.

`hisho_expect_written` (migration 0004) compares what was written with what was meant to be
and raises if a row was left out, so the whole statement rolls back: a missing inbox row
(`HS208`) is `AlreadyAppliedError`, a missing state row (`HS409`) `ConcurrencyError`.
`hisho_expect_unheld` (migration 0007) raises `HS423` (`HeldError`) when a guarded message
has a held row of its partition before its own; the statement also deletes that own row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import asyncpg

from infra.db.aggregate_ids import is_id_taken, taken_error
from infra.db.state_tables import AGGREGATE_STATE
from infra.db.tables import CONSUMER_HELD, INBOX
from infra.db.uow import AlreadyAppliedError, ConcurrencyError, HeldError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from infra.db.table import Table

# Raised by hisho_expect_written (migration 0004) and hisho_expect_unheld (0007).
APPLIED_SQLSTATE = "HS208"
STALE_SQLSTATE = "HS409"
HELD_SQLSTATE = "HS423"

Changed = tuple[str, uuid.UUID, int, int, str]  # type, id, version read, new version, state
Guard = tuple[str, str, uuid.UUID]  # consumer, partition key, message id


@dataclass
class Writes:
    """The rows one unit of work writes at commit: inserts by table, changes, hold guards."""

    inserts: dict[Table, list[tuple[Any, ...]]] = field(default_factory=dict)
    changed: list[Changed] = field(default_factory=list)
    guards: list[Guard] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed or self.guards or any(self.inserts.values()))


def _first(table: Table) -> tuple[int, str]:
    return ({INBOX.name: 0, AGGREGATE_STATE.name: 1}.get(table.name, 2), table.name)


@lru_cache(maxsize=256)
def commit_sql(tables: tuple[Table, ...], changed: bool, guarded: bool) -> str:
    """The statement writing rows of `tables` (in this order), changes and guards if asked."""
    ctes: list[str] = []
    number = 1
    counts = {INBOX.name: "0", AGGREGATE_STATE.name: "0"}
    for n, table in enumerate(tables):
        ctes.append(f"w{n} AS ({table.insert_sql(number)} RETURNING 1)")
        number += len(table.written)
        if table.name in counts:
            counts[table.name] = f"(SELECT count(*) FROM w{n})"  # noqa: S608
    states = counts[AGGREGATE_STATE.name]
    if changed:
        p = [f"${number + k}" for k in range(5)]
        ctes.append(
            f"changed AS (UPDATE {AGGREGATE_STATE.name} s SET version = u.version,"  # noqa: S608
            f" state = u.state, updated_at = now() FROM unnest({p[0]}::text[], {p[1]}::uuid[],"
            f" {p[2]}::bigint[], {p[3]}::bigint[], {p[4]}::jsonb[])"
            " AS u(aggregate_type, aggregate_id, read_version, version, state)"
            " WHERE s.aggregate_type = u.aggregate_type AND s.aggregate_id = u.aggregate_id"
            " AND s.version = u.read_version RETURNING 1)"
        )
        number += 5
        states += " + (SELECT count(*) FROM changed)"
    held = ""
    if guarded:
        held_table = CONSUMER_HELD.name
        ctes.append(
            f"guard AS (SELECT * FROM unnest(${number}::text[], ${number + 1}::text[],"  # noqa: S608
            f" ${number + 2}::uuid[]) AS g(consumer, partition_key, message_id))"
        )
        ctes.append(
            f"released AS (DELETE FROM {held_table} h USING guard g"  # noqa: S608
            " WHERE h.consumer = g.consumer AND h.message_id = g.message_id RETURNING 1)"
        )
        number += 3
        held = (
            f", hisho_expect_unheld((SELECT h.message_id FROM guard g JOIN {held_table} h"  # noqa: S608
            " ON h.consumer = g.consumer AND h.partition_key = g.partition_key"
            f" WHERE h.seq < coalesce((SELECT o.seq FROM {held_table} o"
            " WHERE o.consumer = g.consumer AND o.message_id = g.message_id),"
            " 9223372036854775807) ORDER BY h.seq LIMIT 1))"
        )
    return (
        f"WITH {', '.join(ctes)} SELECT hisho_expect_written(${number}::bigint,"
        f" {counts[INBOX.name]}, ${number + 1}::bigint, {states}){held}"
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def commit_params(units: Sequence[Writes]) -> tuple[str, list[Any]]:
    """The statement for the writes of `units`, together, and its parameters."""
    rows: dict[Table, list[tuple[Any, ...]]] = {}
    for unit in units:
        for table, kept in unit.inserts.items():
            if kept:
                rows.setdefault(table, []).extend(kept)
    tables = tuple(sorted(rows, key=_first))
    changed = [row for unit in units for row in unit.changed]
    guards = [guard for unit in units for guard in unit.guards]
    params: list[Any] = [array for table in tables for array in table.arrays(rows[table])]
    if changed:
        params += _columns(changed, 5)
    if guards:
        params += _columns(guards, 3)
    states = len(rows.get(AGGREGATE_STATE, ())) + len(changed)
    params += [len(rows.get(INBOX, ())), states]
    return commit_sql(tables, bool(changed), bool(guards)), params


async def write(driver: asyncpg.Connection, units: Sequence[Writes]) -> None:
    """Write `units` in one statement; nothing of them if it raises.

    `AlreadyAppliedError` if a claimed message was applied already, `ConcurrencyError` if a
    read went stale, `HeldError` if a guarded message must wait, `AggregateIdTakenError` if a
    new aggregate's id is another type's (with one unit: that unit's; with several: any).
    """
    sql, params = commit_params(units)
    try:
        await driver.fetchval(sql, *params)
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == APPLIED_SQLSTATE:
            raise AlreadyAppliedError(str(exc)) from exc
        if exc.sqlstate == STALE_SQLSTATE:
            raise ConcurrencyError(str(exc)) from exc
        if exc.sqlstate == HELD_SQLSTATE:
            detail = getattr(exc, "detail", None)
            raise HeldError(uuid.UUID(detail) if detail else None, str(exc)) from exc
        if is_id_taken(exc):
            created = [
                (row[0], row[1]) for unit in units for row in unit.inserts.get(AGGREGATE_STATE, [])
            ]
            raise await taken_error(driver, exc, created) from exc
        raise
