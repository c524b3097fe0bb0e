"""Group load: the aggregate reads of one process asked for in the same turn share one SELECT.

The read side of group commit (`infra.db.group_commit`). When the processor falls behind,
the deliveries of one socket read start deciding together, and each would send its own
`SELECT` for its aggregate: a socket write, a statement and a wake-up of a PostgreSQL
backend per command, just when the processor can least afford them. The `GroupLoad`
collects the loads asked for in one turn of the event loop and reads them with ONE
statement on the first asker's connection; a lone load goes alone, so a quiet processor
waits for nothing, and the cost per command falls as the backlog grows.

A read is optimistic either way (the unit's commit checks the version it read), so which
pooled connection runs it does not matter: every asker is waiting for its answer, so its
connection is idle. An error reaches every asker of the group (a lost connection is
transient: the runtime retries their commands).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from infra.db.repositories import LOAD_SQL
from infra.turn_batch import TurnBatch, settle

if TYPE_CHECKING:
    import asyncpg

Loaded = tuple[int, Any] | None  # (version, state) as the driver decodes them, or absent
_Asked = tuple["asyncpg.Connection", str, uuid.UUID, "asyncio.Future[Loaded]"]

# One row per asker that found its aggregate, numbered as asked (several askers may ask for
# the same aggregate: each gets the row).
GROUP_LOAD_SQL = (
    "SELECT k.n, s.version, s.state"
    " FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS k(t, i, n)"
    " JOIN aggregate_state AS s ON s.aggregate_type = k.t AND s.aggregate_id = k.i"
)


class GroupLoad:
    """Loads the aggregates asked for in the same turn of the event loop together."""

    def __init__(self) -> None:
        self._batch = TurnBatch(self._flush)
        self.statements = 0  # statements sent (groups and lone loads), for tests and metrics
        self.grouped = 0  # loads answered by a statement for two or more

    async def load(
        self, driver: asyncpg.Connection, aggregate_type: str, aggregate_id: uuid.UUID
    ) -> Loaded:
        """The committed `(version, state)` of one aggregate, or None.

        Read with the others asked for in this turn, on `driver` or another asker's connection.
        """
        loaded: asyncio.Future[Loaded] = asyncio.get_running_loop().create_future()
        self._batch.submit((driver, aggregate_type, aggregate_id, loaded))
        return await loaded

    async def _flush(self, asked: list[_Asked]) -> None:
        # An asker cancelled meanwhile (a stop) is left out; its connection may be going back.
        asked = [one for one in asked if not one[3].done()]
        if not asked:
            return
        self.statements += 1
        driver = asked[0][0]
        try:
            if len(asked) == 1:
                _, aggregate_type, aggregate_id, _ = asked[0]
                row = await driver.fetchrow(LOAD_SQL, aggregate_type, aggregate_id)
                found = {1: (row[0], row[1])} if row is not None else {}
            else:
                rows = await driver.fetch(
                    GROUP_LOAD_SQL, [one[1] for one in asked], [one[2] for one in asked]
                )
                found = {row[0]: (row[1], row[2]) for row in rows}
                self.grouped += len(asked)
        except asyncio.CancelledError:
            for *_, loaded in asked:
                loaded.cancel()
            raise
        except Exception as exc:  # noqa: BLE001  (a lost connection: every asker's outcome)
            for *_, loaded in asked:
                settle(loaded, None, exc)
            return
        for number, (*_, loaded) in enumerate(asked, start=1):
            settle(loaded, found.get(number))
