"""Group commit: the units of work of one process that are ready together share one statement.

Under load many commands finish deciding within the same turn of the event loop. Each would
send its own commit statement: a socket write, a statement and a WAL flush per command. The
`GroupCommit` collects the commits asked for in one turn and writes them with ONE statement
(`infra.db.statement` takes arrays), on the first unit's connection; every
unit then learns the result. A lone commit goes alone, so a quiet processor waits for
nothing. (PostgreSQL's `commit_delay` groups WAL flushes only; this also saves the writes
and statements.)

All or nothing stays per statement: if the group's statement fails because of one unit (a
claim already applied, a stale read, an id another aggregate holds, a held message, a
command twice in one group), nothing of it was written, and each unit is committed again on
its own (in the order they asked), so each gets its own outcome. A lost connection fails
every unit of the group alike (transient: the runtime retries them).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg

from infra.db.aggregate_ids import AggregateIdTakenError
from infra.db.statement import write
from infra.db.uow import AlreadyAppliedError, ConcurrencyError, HeldError
from infra.turn_batch import TurnBatch, settle

if TYPE_CHECKING:
    from infra.db.statement import Writes

_Waiting = tuple[asyncpg.Connection, "Writes", "asyncio.Future[None]"]


class GroupCommit:
    """Commits the units that are ready in the same turn of the event loop together."""

    def __init__(self) -> None:
        self._batch = TurnBatch(self._flush)
        self.statements = 0  # statements sent (groups and lone units), for tests and metrics
        self.grouped = 0  # units committed as part of a group of two or more

    async def commit(self, driver: asyncpg.Connection, writes: Writes) -> None:
        """Write `writes`, alone or with the other units ready in this turn.

        On `driver` or another waiting unit's connection; raises as `statement.write`.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.submit((driver, writes, done))
        await done

    async def _flush(self, group: list[_Waiting]) -> None:
        # A unit whose task was cancelled meanwhile (a stop) is left out: its message was not
        # acknowledged and comes back; its connection may be on its way back to the pool.
        group = [waiting for waiting in group if not waiting[2].done()]
        if len(group) <= 1:
            for waiting in group:
                await self._alone(waiting)
            return
        self.statements += 1
        try:
            await write(group[0][0], [writes for _, writes, _ in group])
        except (
            AlreadyAppliedError,
            ConcurrencyError,
            HeldError,
            AggregateIdTakenError,
            asyncpg.PostgresError,
        ):
            # PostgreSQL refused the group (one unit's claim, read or new id, a command twice
            # in it, ...): nothing was written; each unit goes again on its own, in the order
            # they asked, so the first of two rivals wins as it would have alone.
            for waiting in group:
                await self._alone(waiting)
            return
        except asyncio.CancelledError:
            for _, _, done in group:
                done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001  (a lost connection: every unit's outcome)
            for _, _, done in group:
                settle(done, None, exc)
            return
        self.grouped += len(group)
        for _, _, done in group:
            settle(done, None)

    async def _alone(self, waiting: _Waiting) -> None:
        driver, writes, done = waiting
        self.statements += 1
        try:
            await write(driver, [writes])
        except asyncio.CancelledError:
            done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001  (the unit's own outcome)
            settle(done, None, exc)
        else:
            settle(done, None)
