"""Leader election: a PostgreSQL session advisory lock held on a dedicated connection.

The lock lives exactly as long as the connection: when the leader process dies (even by
SIGKILL) the kernel closes its socket, PostgreSQL ends the session and releases the lock,
and a standby blocked in `pg_advisory_lock` gets it at once. The relay and the scheduler
each elect their own leader, with their own key.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TYPE_CHECKING

import asyncpg
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

CONNECT_TIMEOUT = 5.0
log = structlog.get_logger("hisho.leadership")


async def acquire_leadership(
    dsn: str,
    stop: asyncio.Event,
    *,
    key: int,
    application: str,
    prepare: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Connection | None:
    """A new connection holding lock `key`, or None if `stop` was set while waiting.

    `application` is what the connection shows in `pg_stat_activity`. `prepare` runs on the
    connection before it waits: a hot standby does its set-up then, not after the leader died.
    """
    connection = await asyncpg.connect(
        dsn,
        timeout=CONNECT_TIMEOUT,
        server_settings={"application_name": application},
    )
    if prepare is not None:
        try:
            await prepare(connection)
        except BaseException:
            connection.terminate()
            raise
    acquire = asyncio.ensure_future(connection.execute("SELECT pg_advisory_lock($1)", key))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        acquire.cancel()
        connection.terminate()
        raise
    finally:
        stopping.cancel()
    if acquire.done():
        if acquire.exception() is None:
            return connection
        connection.terminate()
        await acquire  # re-raises the failure: the caller retries with backoff
    acquire.cancel()
    connection.terminate()  # ends the wait on the server too
    with suppress(asyncio.CancelledError, asyncpg.PostgresError, asyncpg.InterfaceError):
        await acquire
    return None


_LEADER = """SELECT a.application_name FROM pg_locks AS l
    JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::bigint = $1 AND l.objid::bigint = $2"""


async def current_leader(connection: asyncpg.Connection, *, key: int) -> str | None:
    """The application name of the session holding lock `key`, or None."""
    name = await connection.fetchval(_LEADER, key >> 32, key & 0xFFFFFFFF)
    return None if name is None else str(name)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def serve_terms(
    term: Callable[[], Awaitable[None]], stop: asyncio.Event, *, name: str
) -> None:
    """Serve `term` (wait for the lock, then lead) again and again until `stop` is set.

    Any failure ends a term and starts the next one after a backoff (50 ms, doubling
    to 2 s), logged as `<name>.term_failed` with the error (the first of a group).
    """
    event = f"{name}.term_failed"

    def failed(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        while isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]
        log.warning(event, error=repr(error), attempt=state.attempt_number)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_exponential(multiplier=0.05, max=2.0),
        sleep=lambda seconds: wait_or_stop(stop, seconds),
        before_sleep=failed,
    )
    async for attempt in retrying:
        with attempt:
            await term()
