"""The composition root: the only place that wires settings, servers and components together.

`prepare()` makes the outside world ready (local stack, schema, topology); `up()` is
`hisho up`: prepare, then supervise every component as its own process.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aio_pika
import structlog

from hisho.supervisor import Supervisor
from infra.auth import SqlApiKeyStore, ensure_bootstrap_admin_key
from infra.db.engine import create_engine
from infra.db.migrate import upgrade_to_head
from infra.stack.launcher import Stack
from infra.topology import declare_topology

if TYPE_CHECKING:
    from infra.settings import Settings

log = structlog.get_logger("hisho")


@dataclass
class Prepared:
    """What `prepare()` did, so `up()` can undo exactly that."""

    stack: Stack | None = None
    started_services: list[str] = field(default_factory=list)


async def prepare(settings: Settings) -> Prepared:
    """Start the local stack where needed, migrate the database, declare the topology."""
    prepared = Prepared()
    if settings.uses_local_stack:
        prepared.stack = Stack(settings)
        prepared.started_services = await asyncio.to_thread(prepared.stack.up)
    await upgrade_to_head(settings)
    await _bootstrap_admin_key(settings)
    connection = await aio_pika.connect(settings.amqp)
    try:
        await declare_topology(connection)
    finally:
        await connection.close()
    return prepared


async def _bootstrap_admin_key(settings: Settings) -> None:
    """First start only: create a local admin API key and print it once (it is stored hashed)."""
    engine = create_engine(settings, pool_size=1)
    try:
        token = await ensure_bootstrap_admin_key(SqlApiKeyStore(engine))
    finally:
        await engine.dispose()
    if token is not None:
        log.warning("local admin API key created; it is shown only now, on stderr")
        print(f"\nhisho: local admin API key (shown once): {token}\n", file=sys.stderr)  # noqa: T201


async def up(settings: Settings, components: list[str]) -> int:
    """Run `hisho up`: prepare, supervise `components` until SIGTERM/SIGINT, clean up."""
    prepared = await prepare(settings)
    try:
        return await Supervisor(components).run()
    finally:
        if prepared.stack is not None and prepared.started_services:
            await asyncio.to_thread(prepared.stack.down, prepared.started_services)
            log.info("stack stopped", services=prepared.started_services)
