"""One id, one aggregate: an id another aggregate type already holds is an answer, not a crash.

Aggregate ids are chosen by clients. `aggregate_state` is keyed by `(type, id)`, so a new
plan whose id is a project's passes the state insert; the event log is keyed by
`(aggregate_id, aggregate_version)` (the `outbox_aggregate` index), so its first event
collides with the project's. The unit's statement then fails with a unique violation on that
index and writes nothing (the index entry waits for a rival still committing, so the holder
is committed by then). `taken_error` turns that violation into `AggregateIdTakenError`, a
`DomainError` the processor records as the command's rejection (`aggregate-id-taken`, 409).
The hot path pays nothing for this: no read looks for other types beforehand.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from domain.errors import DomainError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import asyncpg

OUTBOX_AGGREGATE_INDEX = "outbox_aggregate"  # unique (aggregate_id, aggregate_version)
ID_TAKEN_CODE = "aggregate-id-taken"
# The violation's detail names the key: "Key (...)=(<uuid>, <version>) already exists".
_KEY = re.compile(r"=\(([0-9a-fA-F-]{36}), (\d+)\)")
# Who holds the id: its event at that version (the unique index answers).
HOLDER_SQL = "SELECT aggregate_type FROM outbox WHERE aggregate_id = $1 AND aggregate_version = $2"


class AggregateIdTakenError(DomainError):
    """A command would create an aggregate whose id an aggregate of another type holds."""

    def __init__(
        self, aggregate_type: str | None, aggregate_id: uuid.UUID | None, holder: str | None
    ) -> None:
        new = f"a new {aggregate_type}" if aggregate_type else "a new aggregate"
        held = f"a {holder}" if holder else "another aggregate"
        which = str(aggregate_id) if aggregate_id else "its id"
        reason = f"{which} is the id of {held}: {new} needs an id no aggregate has"
        super().__init__(ID_TAKEN_CODE, reason)
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        self.holder = holder


def is_id_taken(exc: BaseException) -> bool:
    """Whether `exc` is the event log's unique `(aggregate_id, aggregate_version)` refusing."""
    return getattr(exc, "constraint_name", None) == OUTBOX_AGGREGATE_INDEX


async def taken_error(
    driver: asyncpg.Connection,
    exc: asyncpg.PostgresError,
    created: Iterable[tuple[str, uuid.UUID]],
) -> AggregateIdTakenError:
    """The domain's answer for an `outbox_aggregate` violation of a statement creating `created`.

    Names the new aggregate and the holder when it can (one indexed read, on this rare path).
    """
    found = _KEY.search(getattr(exc, "detail", None) or "")
    if found is None:
        return AggregateIdTakenError(None, None, None)
    aggregate_id, version = uuid.UUID(found[1]), int(found[2])
    kind = next((kind for kind, key in created if key == aggregate_id), None)
    holder = await driver.fetchval(HOLDER_SQL, aggregate_id, version)
    return AggregateIdTakenError(kind, aggregate_id, None if holder is None else str(holder))
