"""Migrations on a fresh, uniquely named database: up, down, up again, and concurrently."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, make_url, pool
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from typer.testing import CliRunner

from events.plan import PlanApprovalRecorded, PlanSubmitted
from events.project import ProjectCreated
from hisho.cli import app
from infra.db import (
    ingress_tables,
    key_tables,
    notification_tables,
    parked_tables,
    people_tables,
    state_tables,
    tables,
    timer_tables,
)
from infra.db.engine import create_engine
from infra.db.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    downgrade_to_base,
    upgrade,
    upgrade_to_head,
)
from infra.db.pg_uow import PgUnitOfWork
from infra.eventlog.chain import GENESIS, canonical_bytes, link_hash
from infra.eventlog.reader import EventLogReader
from infra.eventlog.verify import use_json_codecs, verify_chain
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
    modules = (
        tables,
        state_tables,
        key_tables,
        ingress_tables,
        people_tables,
        timer_tables,
        parked_tables,
        notification_tables,
    )
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


# Rows as the code before issue 15 wrote them (revision 0008): v1 payloads, bare principals.
_V1_PROJECT = uuid.UUID("00000000-0000-4000-8000-000000000001")
_V1_PLAN = uuid.UUID("00000000-0000-4000-8000-000000000002")
_V1_POLICY = {
    "approvers": ["alice", "bob"],
    "required_approvals": 1,
    "auto_approve_max_steps": 0,
    "approval_deadline": None,
}
_V1_EVENTS: list[tuple[str, str, uuid.UUID, dict[str, Any]]] = [
    (
        "ProjectCreated",
        "project.created",
        _V1_PROJECT,
        {"project_id": str(_V1_PROJECT), "name": "Old", "policy": _V1_POLICY},
    ),
    (
        "PlanSubmitted",
        "plan.submitted",
        _V1_PLAN,
        {
            "plan_id": str(_V1_PLAN),
            "project_id": str(_V1_PROJECT),
            "step_count": 1,
            "policy": _V1_POLICY,
            "deadline": None,
        },
    ),
    (
        "PlanApprovalRecorded",
        "plan.approval_recorded",
        _V1_PLAN,
        {
            "plan_id": str(_V1_PLAN),
            "approver": "alice",
            "comment": None,
            "approvals": 1,
            "required_approvals": 1,
        },
    ),
]
_V1_ROW = """INSERT INTO outbox (id, type, version, occurred_at, aggregate_type, aggregate_id,
        aggregate_version, correlation_id, actor, data, exchange, routing_key)
    VALUES ($1, $2, 1, $3, $4, $5, $6, $1, '{"kind": "api_key", "id": "0123456789abcdef"}',
        $7::jsonb, 'hisho.events', $8)"""
_V1_STATE = """INSERT INTO aggregate_state (aggregate_type, aggregate_id, version, state)
    VALUES ('project', $1, 1, $2::jsonb)"""


async def _write_v1_log(settings: Settings) -> None:
    """The v1 rows, positioned and chained as the relay did (`infra.eventlog.chain`)."""
    conn = await asyncpg.connect(settings.database_dsn)
    try:
        at = datetime(2026, 11, 1, tzinfo=UTC)
        for version, (kind, key, aggregate_id, data) in enumerate(_V1_EVENTS, start=1):
            aggregate = key.split(".")[0]
            await conn.execute(
                _V1_ROW,
                uuid.uuid4(),
                kind,
                at,
                aggregate,
                aggregate_id,
                version,
                json.dumps(data),
                key,
            )
        await use_json_codecs(conn)
        prev = GENESIS
        rows = await conn.fetch("SELECT * FROM outbox ORDER BY seq")
        for position, row in enumerate(rows, start=1):
            link = link_hash(prev, canonical_bytes(row, position))
            await conn.execute(
                "UPDATE outbox SET position = $2, prev_hash = $3, hash = $4, published_at = now()"
                " WHERE id = $1",
                row["id"],
                position,
                prev,
                link,
            )
            prev = link
        project = {"id": str(_V1_PROJECT), "name": "Old", "policy": _V1_POLICY}
        await conn.execute(_V1_STATE, _V1_PROJECT, project)  # the JSON codec encodes it
    finally:
        await conn.close()


async def test_v1_rows_of_the_previous_code_read_as_v2_and_still_verify(fresh: Settings) -> None:
    await upgrade(fresh, "0008_consumer_effects")
    await _write_v1_log(fresh)
    await upgrade_to_head(fresh)
    engine = create_engine(fresh)
    try:
        read = [e async for e in EventLogReader(async_sessionmaker(engine)).stream()]
        async with PgUnitOfWork(engine) as unit:
            project = await unit.aggregates.projects.require(_V1_PROJECT)
    finally:
        await engine.dispose()
    created, submitted, recorded = (envelope.data for envelope in read)
    assert [envelope.version for envelope in read] == [2, 2, 2]
    assert isinstance(created, ProjectCreated)
    assert (created.owner, created.policy.approvers) == (None, ("legacy:alice", "legacy:bob"))
    assert isinstance(submitted, PlanSubmitted)
    assert (submitted.title, submitted.submitted_by) == (None, None)
    assert isinstance(recorded, PlanApprovalRecorded)
    assert (recorded.approver, recorded.project_id, recorded.cast_by) == (
        "legacy:alice",
        None,
        None,
    )
    # The migration filled the log's new columns and namespaced the stored state's principals.
    rows = await _fetch(fresh, "SELECT kind, project_id FROM outbox ORDER BY position")
    assert [(r["kind"], r["project_id"]) for r in rows] == [
        ("event", _V1_PROJECT),
        ("event", _V1_PROJECT),
        ("event", None),
    ]
    assert (project.owner, project.policy.approvers) == (None, ("legacy:alice", "legacy:bob"))
    # The chain covers the stored bytes, not the upcast view: it verifies unchanged.
    conn = await asyncpg.connect(fresh.database_dsn)
    try:
        report = await verify_chain(conn)
    finally:
        await conn.close()
    assert (report.checked, report.broken) == (3, None)
