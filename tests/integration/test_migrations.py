"""Migrations on a fresh, uniquely named database: up, down, up again, and concurrently."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, make_url, pool
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from hisho.cli import app
from infra.db import ingress_tables, key_tables, people_tables, state_tables, tables
from infra.db.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    downgrade_to_base,
    upgrade,
    upgrade_to_head,
)
from infra.settings import Settings, load_settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

FOUNDATION_TABLES = {"outbox", "inbox", "command_status"}
FOUNDATION_INDEXES = {
    "outbox_pkey",
    "outbox_seq_key",
    "outbox_position_key",
    "outbox_unpublished",
    "outbox_aggregate",
    "outbox_type_position",
    "outbox_correlation_position",
    "inbox_pkey",
    "command_status_pkey",
}


@pytest.fixture
async def fresh(settings: Settings) -> AsyncIterator[Settings]:
    """Settings naming a brand-new empty database, dropped afterwards."""
    name = f"hisho_mig_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(settings.database_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(settings.database_dsn).set(database=name)
        yield load_settings(database_url=url.render_as_string(hide_password=False))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _fetch(settings: Settings, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.database_dsn)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


async def _tables(settings: Settings) -> set[str]:
    rows = await _fetch(
        settings,
        "SELECT c.relname FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')",
    )
    return {row["relname"] for row in rows}


async def _indexes(settings: Settings) -> dict[str, str | None]:
    """Index name -> its partial predicate (None when it indexes every row)."""
    rows = await _fetch(
        settings,
        "SELECT c.relname, pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate "
        "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
    )
    return {row["relname"]: row["predicate"] for row in rows}


async def test_upgrade_creates_foundation_tables_and_indexes(fresh: Settings) -> None:
    assert await _tables(fresh) == set()
    await upgrade(fresh, "0001_foundation")
    assert await _tables(fresh) == FOUNDATION_TABLES | {"alembic_version"}
    indexes = await _indexes(fresh)
    assert set(indexes) >= FOUNDATION_INDEXES
    assert indexes["outbox_unpublished"] == "(published_at IS NULL)"
    assert indexes["outbox_aggregate"] == "(aggregate_id IS NOT NULL)"
    assert await current_revision(fresh) == "0001_foundation"


async def test_downgrade_removes_everything_and_upgrade_works_again(fresh: Settings) -> None:
    await upgrade_to_head(fresh)
    assert await _tables(fresh) >= FOUNDATION_TABLES
    await downgrade_to_base(fresh)
    assert await _tables(fresh) == {"alembic_version"}
    assert not set(await _indexes(fresh)) & FOUNDATION_INDEXES
    assert await current_revision(fresh) is None
    await upgrade_to_head(fresh)
    assert await _tables(fresh) >= FOUNDATION_TABLES
    await downgrade(fresh, "0001_foundation")
    assert await _tables(fresh) == FOUNDATION_TABLES | {"alembic_version"}


async def test_two_concurrent_upgrades_both_succeed(fresh: Settings) -> None:
    await asyncio.gather(upgrade_to_head(fresh), upgrade_to_head(fresh), upgrade_to_head(fresh))
    assert await _tables(fresh) >= FOUNDATION_TABLES
    assert await current_revision(fresh) is not None


async def test_head_revision_matches_the_table_modules(fresh: Settings) -> None:
    await upgrade_to_head(fresh)
    engine = create_async_engine(fresh.database, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(_diff_against_tables_module)
    finally:
        await engine.dispose()
    assert diff == []


def _diff_against_tables_module(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": True},
    )
    # Every table module registers its tables on one MetaData.
    modules = (tables, state_tables, key_tables, ingress_tables, people_tables)
    assert {module.metadata for module in modules} == {tables.metadata}
    return list(compare_metadata(context, tables.metadata))


def test_cli_migrate_upgrades_and_downgrades(fresh: Settings) -> None:
    env = {"HISHO_DATABASE_URL": fresh.database_dsn}
    up = CliRunner().invoke(app, ["migrate"], env=env)
    assert up.exit_code == 0, up.output
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"database at revision {head}" in up.output
    down = CliRunner().invoke(app, ["migrate", "--downgrade", "base"], env=env)
    assert down.exit_code == 0, down.output
    assert "database at revision base" in down.output
