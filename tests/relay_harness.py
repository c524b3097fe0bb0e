"""Test support for the relay: private databases, outbox rows by plain SQL, relay processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import PostgresDsn

from hisho.bootstrap import run_on_app
from infra.db.migrate import upgrade_to_head
from infra.settings import PROJECT_ROOT, Settings
from infra.topology import EVENTS_EXCHANGE
from producers import relay
from producers.relay.leader import current_leader

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
    from pathlib import Path

PROBE_TYPE = "RelayProbed"

_INSERT = """INSERT INTO outbox (id, type, version, occurred_at, aggregate_type, aggregate_id,
        aggregate_version, correlation_id, actor, traceparent, data, exchange, routing_key)
    SELECT u.id, 'RelayProbed', 1, now(), 'relay_probe', u.aggregate_id, u.aggregate_version,
        u.id, '{"kind": "system", "id": "relay-tests"}',
        '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        jsonb_build_object('version', u.aggregate_version, 'note', 'ça va ✓'), $4, $5
    FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS u(id, aggregate_id, aggregate_version)"""


@dataclass(frozen=True)
class Probe:
    """One outbox row a test writes: its id and its place in its aggregate."""

    id: uuid.UUID
    aggregate_id: uuid.UUID
    aggregate_version: int


def probes(aggregates: int, versions: int) -> list[Probe]:
    """Events of `aggregates` aggregates, versions interleaved (v1 of all, then v2 of all…)."""
    ids = [uuid.uuid4() for _ in range(aggregates)]
    return [Probe(uuid.uuid4(), agg, v) for v in range(1, versions + 1) for agg in ids]


async def insert_probes(
    connection: asyncpg.Connection,
    routing_key: str,
    rows: Iterable[Probe],
    *,
    exchange: str = EVENTS_EXCHANGE,
) -> None:
    """Insert outbox rows (in the connection's current transaction, if any)."""
    batch = list(rows)
    await connection.execute(
        _INSERT,
        [p.id for p in batch],
        [p.aggregate_id for p in batch],
        [p.aggregate_version for p in batch],
        exchange,
        routing_key,
    )


def unique_routing_key() -> str:
    """A topic routing key no other test publishes to."""
    return f"relay_probe.t{uuid.uuid4().hex[:12]}"


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def with_database_url(settings: Settings, dsn: str) -> Settings:
    """`settings` pointed at another database."""
    return settings.model_copy(update={"database_url": PostgresDsn(dsn)})


@asynccontextmanager
async def private_database(settings: Settings) -> AsyncIterator[Settings]:
    """A fresh database migrated to head on the same server; dropped afterwards."""
    name = f"hisho_relay_{uuid.uuid4().hex[:12]}"
    admin = _with_database(settings.database_dsn, "postgres")
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    try:
        private = with_database_url(settings, _with_database(settings.database_dsn, name))
        await upgrade_to_head(private)
        yield private
    finally:
        connection = await asyncpg.connect(admin)  # a new one: the server may have restarted
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


async def log_state(connection: asyncpg.Connection) -> tuple[int, int, int, int]:
    """Rows, rows with a position, published rows, and the highest position."""
    row = await connection.fetchrow(
        "SELECT count(*), count(position), count(published_at), coalesce(max(position), 0) "
        "FROM outbox"
    )
    assert row is not None
    return row[0], row[1], row[2], row[3]


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, every: float = 0.05
) -> None:
    """Poll `check` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


def relay_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a `hisho run relay` process talking to the servers of `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HISHO_")}
    env.update(
        HISHO_DATABASE_URL=settings.database_dsn,
        HISHO_AMQP_URL=settings.amqp,
        HISHO_REDIS_URL=settings.redis,
        HISHO_LOG_FORMAT="json",
        HISHO_RELAY_POLL_INTERVAL="0.1",
        **extra,
    )
    return env


class RelayProcess:
    """One `python -m hisho run relay` subprocess, logging into a file."""

    def __init__(self, settings: Settings, log_path: Path, **extra: str) -> None:
        self._log = log_path.open("ab")  # closed in stop(): it lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hisho", "run", "relay"],
            cwd=PROJECT_ROOT,
            env=relay_environment(settings, **extra),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        """The process id (it names the relay's lock connection)."""
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup."""
        self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait; the exit code (killed with SIGKILL if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


async def leader_pid(connection: asyncpg.Connection) -> int | None:
    """The pid of the process whose session holds the relay lock."""
    name = await current_leader(connection)
    return None if name is None else int(name.rsplit(":", 1)[1])


async def wait_for_leader(connection: asyncpg.Connection, among: Iterable[int]) -> int:
    """Wait until one of the pids `among` leads; return it."""
    pids = set(among)
    found: list[int] = []

    async def leads() -> bool:
        pid = await leader_pid(connection)
        if pid in pids:
            found.append(pid)
        return bool(found)

    await eventually(leads, timeout=30, what=f"one of {sorted(pids)} to lead")
    return found[0]


async def relay_until_published(settings: Settings, connection: asyncpg.Connection) -> None:
    """Run the relay (its `hisho run` code, in process) until every outbox row is published."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_on_app(relay.run, "relay", settings, stop))

    async def published() -> bool:
        rows, _, done, _ = await log_state(connection)
        return rows == done

    try:
        await eventually(published, timeout=20, what="every outbox row to be published")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
