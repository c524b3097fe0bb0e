"""The async SQLAlchemy engine and session factory every component shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection

    from infra.settings import Settings


# asyncpg `server_settings` for connections whose fixed statements should be planned once:
# PostgreSQL keeps re-planning a prepared statement whose generic plan it estimates dearer
# (array parameters through `unnest`, say), and planning can cost more than executing.
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}


def create_engine(settings: Settings, **overrides: Any) -> AsyncEngine:  # noqa: ANN401
    """Create an asyncpg engine: a small pool, checked before use, recycled every half hour."""
    options: dict[str, Any] = {
        "pool_size": 5,
        "max_overflow": 10,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
    }
    options.update(overrides)
    return _create_async_engine(settings.database, **options)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Make sessions that keep loaded values after commit (units of work read ids afterwards)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def driver_of(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a checked-out one (fixed SQL runs there, prepared once)."""
    driver: asyncpg.Connection | None = (await connection.get_raw_connection()).driver_connection
    if driver is None:  # pragma: no cover  (a checked-out connection has one)
        raise RuntimeError("the pooled connection has no driver connection")
    return driver
