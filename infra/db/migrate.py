"""Run the Alembic migrations in `infra/db/migrations` from code, safely from many processes.

Alembic is configured programmatically (no ini file). Each run holds a transaction-scoped
PostgreSQL advisory lock, so two processes migrating at once take turns: the second waits,
then finds the schema already at the target revision and does nothing. PostgreSQL DDL is
transactional, so a failed run leaves the schema as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

if TYPE_CHECKING:
    from infra.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary but fixed: "hishoMIG". Other advisory locks in hisho (the relay's) use other keys.
MIGRATION_LOCK_KEY = 0x686973686F4D4947

_Step = Callable[[Config], None]


def alembic_config() -> Config:
    """Build an Alembic `Config` pointing at hisho's migrations (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


async def upgrade(settings: Settings, revision: str = "head") -> None:
    """Upgrade the database `settings` names to `revision`."""
    await _run(settings, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(settings: Settings, revision: str) -> None:
    """Downgrade the database `settings` names to `revision` (`base` removes everything)."""
    await _run(settings, lambda cfg: command.downgrade(cfg, revision))


async def upgrade_to_head(settings: Settings) -> None:
    """Apply every pending migration."""
    await upgrade(settings, "head")


async def downgrade_to_base(settings: Settings) -> None:
    """Undo every migration."""
    await downgrade(settings, "base")


async def current_revision(settings: Settings) -> str | None:
    """Return the revision the database is at, or None before the first migration."""
    engine = create_async_engine(settings.database, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


async def _run(settings: Settings, step: _Step) -> None:
    engine = create_async_engine(settings.database, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await _lock(connection)
            await connection.run_sync(_with_connection, step)
    finally:
        await engine.dispose()


async def _lock(connection: AsyncConnection) -> None:
    # Released by the commit or rollback that ends this transaction.
    await connection.execute(
        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
    )


def _with_connection(connection: Connection, step: _Step) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    step(config)
