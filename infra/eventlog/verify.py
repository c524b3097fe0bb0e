"""Walk the event log's hash chain and name the first position whose link is broken.

The walk pages through positions with keyset queries (`position > last ORDER BY position
LIMIT n`), so memory stays constant however long the log is. A position's link is broken
when the position is missing (a deleted row), when its `prev_hash` is not the hash of the
position before it (a reordered or substituted row), or when its `hash` is not
SHA-256(prev_hash || canonical bytes) of its own content (a changed row).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.db.outbox import ENVELOPE_COLUMNS
from infra.db.tables import CHAIN_COLUMNS, OUTBOX
from infra.eventlog.chain import GENESIS, EnvelopeFields, canonical_bytes, link_hash

if TYPE_CHECKING:
    from collections.abc import Callable

    import asyncpg

# The envelope and its chain link; only names from the table's description are formatted in.
_LINKED = OUTBOX.select_list(tuple(dict.fromkeys((*ENVELOPE_COLUMNS, *CHAIN_COLUMNS))))
_PAGE = f"""SELECT {_LINKED}
    FROM {OUTBOX.name} WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"""  # noqa: S608
_HASH_AT = f"SELECT hash FROM {OUTBOX.name} WHERE position = $1"  # noqa: S608
_LAST = f"SELECT max(position) FROM {OUTBOX.name}"  # noqa: S608


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first broken link: its position and what is wrong there."""

    position: int
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a walk covered and, if the chain is broken, where it breaks first."""

    start: int
    end: int
    checked: int
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        """True when every link in start..end holds."""
        return self.broken is None


def check_link(
    row: EnvelopeFields, expected_position: int, expected_prev: bytes
) -> ChainBreak | None:
    """Check one row against the position and previous hash the chain expects there."""
    if row["position"] != expected_position:
        return ChainBreak(expected_position, f"position {expected_position} is missing")
    if row["prev_hash"] is None or row["hash"] is None:
        return ChainBreak(expected_position, "the event has no hash-chain link")
    prev_hash = bytes(row["prev_hash"])
    if prev_hash != expected_prev:
        return ChainBreak(
            expected_position,
            f"prev_hash is not the hash of position {expected_position - 1} "
            "(an event was removed, reordered or replaced)",
        )
    if link_hash(prev_hash, canonical_bytes(row, expected_position)) != bytes(row["hash"]):
        return ChainBreak(expected_position, "hash does not match the event's content")
    return None


async def use_json_codecs(connection: asyncpg.Connection) -> None:
    """Make `connection` decode json/jsonb into Python values: the chain hashes those."""
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _anchor(connection: asyncpg.Connection, start: int) -> bytes | None:
    """The hash the link of `start` must point at (GENESIS for 1); None if it is missing."""
    if start == 1:
        return GENESIS
    value = await connection.fetchval(_HASH_AT, start - 1)
    return None if value is None else bytes(value)


async def verify_chain(
    connection: asyncpg.Connection,
    *,
    start: int = 1,
    end: int | None = None,
    page_size: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify links start..end (end defaults to the last position)."""
    await use_json_codecs(connection)
    last = end if end is not None else (await connection.fetchval(_LAST) or 0)
    if last < start:
        return VerifyReport(start, last, 0, None)
    expected_prev = await _anchor(connection, start)
    if expected_prev is None:
        reason = f"position {start - 1}, which the link of {start} points at, is missing"
        return VerifyReport(start, last, 0, ChainBreak(start, reason))
    position, checked = start, 0
    while position <= last:
        rows = await connection.fetch(_PAGE, position - 1, last, page_size)
        if not rows:
            break
        for row in rows:
            broken = check_link(row, position, expected_prev)
            if broken is not None:
                return VerifyReport(start, last, checked, broken)
            expected_prev, position, checked = bytes(row["hash"]), position + 1, checked + 1
        if progress is not None:
            progress(position - 1, last)
    if position <= last:
        return VerifyReport(
            start, last, checked, ChainBreak(position, f"position {position} is missing")
        )
    return VerifyReport(start, last, checked, None)
