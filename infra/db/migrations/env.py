"""Alembic environment: runs on a connection handed in by `infra.db.migrate`, or on its own."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from infra.db.tables import metadata
from infra.settings import load_settings

config = context.config


def run_on(connection: Connection) -> None:
    """Run the pending migrations on `connection` (the caller owns its transaction)."""
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_standalone() -> None:
    """Used by a bare `alembic` command: connect to the database `Settings` names."""
    engine = create_async_engine(load_settings().database, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("hisho migrations run online only")

handed_in = config.attributes.get("connection")
if handed_in is not None:
    run_on(handed_in)
else:
    asyncio.run(run_standalone())
