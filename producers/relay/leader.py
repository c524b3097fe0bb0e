"""Leader election for the relay: the advisory lock `RELAY_LOCK_KEY` (`infra.leadership`).

The lock lives exactly as long as its connection: when the leader process dies (even by
SIGKILL) PostgreSQL ends the session and releases the lock, and the standby blocked in
`pg_advisory_lock` gets it at once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from infra import leadership

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    import asyncpg

# Arbitrary but fixed: "hishoREL". Advisory locks are per database.
RELAY_LOCK_KEY = 0x686973686F52454C
APPLICATION_PREFIX = "hisho-relay"


def application_name() -> str:
    """What the relay's lock connection shows in `pg_stat_activity` (with this process id)."""
    return f"{APPLICATION_PREFIX}:{os.getpid()}"


async def acquire_leadership(
    dsn: str,
    stop: asyncio.Event,
    *,
    key: int = RELAY_LOCK_KEY,
    prepare: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Connection | None:
    """A new connection holding the relay lock, or None if `stop` was set while waiting."""
    return await leadership.acquire_leadership(
        dsn, stop, key=key, application=application_name(), prepare=prepare
    )


async def current_leader(
    connection: asyncpg.Connection, *, key: int = RELAY_LOCK_KEY
) -> str | None:
    """The application name of the session holding the relay lock (`hisho-relay:<pid>`)."""
    return await leadership.current_leader(connection, key=key)
