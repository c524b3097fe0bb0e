"""Fixtures shared by every tier. Service fixtures connect lazily: unit tests never touch them."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aio_pika
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from infra.settings import Settings, load_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


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
    from infra.topology import declare_topology  # noqa: PLC0415

    connection = await aio_pika.connect_robust(settings.amqp)
    await declare_topology(connection)
    yield connection
    await connection.close()
