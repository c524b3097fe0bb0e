"""Fixtures shared by every tier. Service fixtures connect lazily: unit tests never touch them.

The session runs in a database and vhost of its own (`tests/isolation.py`), created at start
when the servers are reachable and dropped at the end; the user's data is never touched.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aio_pika
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from infra.settings import Settings, load_settings
from tests.isolation import TestResources, UserDataFingerprint, UserDataProbe, user_servers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

USER_DATA = pytest.StashKey[tuple[UserDataProbe, UserDataFingerprint]]()
RESOURCES = pytest.StashKey[TestResources]()
LAST_TEST = "test_user_data_untouched.py"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fingerprint the user's data, then point the whole session at its own database/vhost."""
    servers = user_servers()
    if not servers.reachable():
        return  # a unit-only run without servers: the service fixtures say what is missing
    probe = UserDataProbe(servers)
    session.config.stash[USER_DATA] = (probe, probe.fingerprint())
    resources = TestResources.create(servers)
    session.config.stash[RESOURCES] = resources
    os.environ.update(resources.environment())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the session's database and vhost."""
    resources = session.config.stash.get(RESOURCES, None)
    if resources is not None:
        resources.drop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The user-data check runs after every other test."""
    items.sort(key=lambda item: item.path.name == LAST_TEST)


@pytest.fixture(scope="session")
def user_data(request: pytest.FixtureRequest) -> tuple[UserDataProbe, UserDataFingerprint]:
    """The probe of the user's data and its fingerprint from before the first test."""
    taken = request.config.stash.get(USER_DATA, None)
    if taken is None:
        pytest.fail("the servers were not reachable at session start: run `make test`")
    return taken


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings as the running stack (or `HISHO_*_URL`) defines them."""
    return load_settings()


def _require(url: str, name: str) -> None:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2).close()
    except OSError:
        pytest.fail(
            f"{name} is not reachable at {parts.hostname}:{parts.port}: run the suite with "
            "`make test` (it starts the local stack) or point HISHO_*_URL at a server",
        )


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a database migrated to head."""
    _require(settings.database_dsn, "PostgreSQL")
    from infra.db.migrate import upgrade_to_head  # noqa: PLC0415  (only tiers with services)

    await upgrade_to_head(settings)
    eng = create_async_engine(settings.database, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def amqp(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    """One robust AMQP connection for the session, with hisho's topology declared."""
    _require(settings.amqp, "RabbitMQ")
    from hisho.consumers import declare_all  # noqa: PLC0415

    connection = await aio_pika.connect_robust(settings.amqp)
    await declare_all(connection)
    yield connection
    await connection.close()
