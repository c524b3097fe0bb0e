"""The test session's own database, vhost and Redis database, so tests never touch user data.

At session start (when the servers are reachable) a database and a RabbitMQ vhost named
`hisho_test_<random>` are created on the servers the settings point at, and `HISHO_*_URL`
are set in `os.environ` to them: every fixture, and every process a test starts, inherits
them. Redis gets its own logical database (`TEST_REDIS_DB`). At the end both are dropped.

Before anything is created, `UserDataProbe` takes a fingerprint of the user's database (row
counts and PostgreSQL's per-table write counters) and vhost (messages published into it);
`tests/integration/test_user_data_untouched.py` compares it after every other test.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx

from infra.settings import Settings, load_settings

TEST_REDIS_DB = 15
MANAGEMENT_PORT_ENV = "HISHO_TEST_AMQP_MANAGEMENT_PORT"  # for a broker not from our launcher
_TIMEOUT = 10.0


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2).close()
    except OSError:
        return False
    return True


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Servers:
    """Where the user's data lives: the database DSN, the AMQP URL and its management API."""

    database_dsn: str
    amqp: str
    redis: str
    management: str

    @classmethod
    def of(cls, settings: Settings) -> Servers:
        """The servers `settings` point at (the local stack's unless `HISHO_*_URL` say else)."""
        amqp = urlsplit(settings.amqp)
        if settings.amqp_url is None:
            port = settings.stack_ports["amqp_management"]
        else:
            port = int(os.environ.get(MANAGEMENT_PORT_ENV, "15672"))
        auth = f"{amqp.username or 'guest'}:{amqp.password or 'guest'}@"
        management = f"http://{auth}{amqp.hostname or '127.0.0.1'}:{port}/api"
        return cls(settings.database_dsn, settings.amqp, settings.redis, management)

    @property
    def vhost(self) -> str:
        """The vhost of the AMQP URL (`/` when the path is empty)."""
        path = urlsplit(self.amqp).path
        return "/" if path in ("", "/") else path[1:]

    def reachable(self) -> bool:
        """True when PostgreSQL and RabbitMQ accept TCP connections."""
        return _reachable(self.database_dsn) and _reachable(self.amqp)

    def management_client(self) -> httpx.Client:
        """A client for the RabbitMQ management API (loopback only)."""
        parts = urlsplit(self.management)
        return httpx.Client(
            base_url=f"http://{parts.hostname}:{parts.port}/api",
            auth=(parts.username or "", parts.password or ""),
            timeout=_TIMEOUT,
        )


async def _table_writes(dsn: str) -> dict[str, tuple[int, int]]:
    """Per table of the database: (live rows counted now, rows ever inserted/updated/deleted)."""
    connection = await asyncpg.connect(dsn, timeout=_TIMEOUT)
    try:
        await connection.execute("SELECT pg_stat_force_next_flush()")
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        stats = await connection.fetch(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS writes"
            " FROM pg_stat_user_tables WHERE schemaname = 'public'"
        )
        counts: dict[str, tuple[int, int]] = {}
        for row in stats:
            name = row["relname"]
            rows = await connection.fetchval(f'SELECT count(*) FROM "{name}"')  # our own tables
            counts[name] = (int(rows), int(row["writes"]))
        return counts
    finally:
        await connection.close()


@dataclass(frozen=True)
class UserDataFingerprint:
    """What the user's database and vhost held, and how often they were written."""

    tables: dict[str, tuple[int, int]]
    published: int | None  # messages ever published into the user's vhost; None: no vhost


class UserDataProbe:
    """Fingerprints the user's database and vhost (those the settings named before the suite)."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers

    def fingerprint(self) -> UserDataFingerprint:
        """Take the fingerprint now."""
        try:
            tables = asyncio.run(_table_writes(self.servers.database_dsn))
        except asyncpg.InvalidCatalogNameError:
            tables = {}  # the user's database does not exist (yet): nothing to touch
        with self.servers.management_client() as api:
            answer = api.get(f"/vhosts/{quote(self.servers.vhost, safe='')}")
        if answer.status_code == httpx.codes.NOT_FOUND:
            return UserDataFingerprint(tables, None)
        answer.raise_for_status()
        published = answer.json().get("message_stats", {}).get("publish", 0)
        return UserDataFingerprint(tables, int(published))


@dataclass
class TestResources:
    """The session's own database and vhost; `drop()` removes both."""

    servers: Servers
    name: str

    @classmethod
    def create(cls, servers: Servers) -> TestResources:
        """Create `hisho_test_<random>` as a database and a vhost (the AMQP user may use it)."""
        resources = cls(servers, f"hisho_test_{secrets.token_hex(4)}")
        asyncio.run(resources._database("CREATE DATABASE"))
        user = urlsplit(servers.amqp).username or "guest"
        with servers.management_client() as api:
            api.put(f"/vhosts/{resources.name}").raise_for_status()
            api.put(
                f"/permissions/{resources.name}/{quote(user, safe='')}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()
        return resources

    async def _database(self, statement: str, suffix: str = "") -> None:
        connection = await asyncpg.connect(
            _with_path(self.servers.database_dsn, "/postgres"), timeout=_TIMEOUT
        )
        try:
            await connection.execute(f'{statement} "{self.name}"{suffix}')
        finally:
            await connection.close()

    def environment(self) -> dict[str, str]:
        """`HISHO_*_URL` for the session's own database, vhost and Redis database."""
        return {
            "HISHO_DATABASE_URL": _with_path(self.servers.database_dsn, f"/{self.name}"),
            "HISHO_AMQP_URL": _with_path(self.servers.amqp, f"/{self.name}"),
            "HISHO_REDIS_URL": _with_path(self.servers.redis, f"/{TEST_REDIS_DB}"),
        }

    def drop(self) -> None:
        """Drop the database (closing what is still connected) and delete the vhost."""
        asyncio.run(self._database("DROP DATABASE IF EXISTS", " WITH (FORCE)"))
        with self.servers.management_client() as api:
            answer = api.delete(f"/vhosts/{self.name}")
            if answer.status_code != httpx.codes.NOT_FOUND:
                answer.raise_for_status()


def user_servers() -> Servers:
    """The servers and names the user's own settings point at."""
    return Servers.of(load_settings())
