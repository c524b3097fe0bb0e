"""The composition root: the only place that wires settings, servers and components together.

`build_app()` builds one process's resources (`infra.app.App`: the PostgreSQL engine sized
for the component, one AMQP connection and one confirmed publisher, Redis, clock, tracer)
and closes them; `hisho run <component>` hands the App to the component's `run`.
`prepare()` makes the outside world ready (local stack, schema, topology); `up()` is
`hisho up`: prepare, then supervise every component as its own process (the relay once more
per hot standby, the scheduler too) and heal the stack services it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aio_pika
import structlog

from hisho.consumers import CONSUMERS, declare_all
from hisho.run_status import status_path
from hisho.stack_watch import StackWatch
from hisho.supervisor import Supervisor, instances
from infra.amqp import AmqpConnection, ConfirmedPublisher
from infra.app import App
from infra.auth import SqlApiKeyStore, ensure_bootstrap_admin_key
from infra.clock import utc_now
from infra.db.engine import GENERIC_PLANS, create_engine
from infra.db.migrate import upgrade_to_head
from infra.logging import renders_json
from infra.redis_store import fail_fast_client
from infra.stack.launcher import Stack
from infra.telemetry import tracer_provider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from infra.consumers import ConsumerRegistry
    from infra.settings import Settings

log = structlog.get_logger("hisho")

# The PostgreSQL pool of every consumer (the processor first): a connection per message in
# flight, no pre-ping (a round trip per message; a dead connection fails once and is retried),
# and generic plans (re-planning its commit statement cost more than executing it).
CONSUMER_ENGINE: dict[str, Any] = {
    "pool_size": 32,
    "max_overflow": 0,
    "pool_pre_ping": False,
    "connect_args": {"server_settings": GENERIC_PLANS},
}
# The other components' pools. The relay's leader lock and marks are asyncpg sessions of
# their own; its engine stays unused.
ENGINE_OPTIONS: dict[str, dict[str, Any]] = {
    "ingress": {"pool_size": 10, "connect_args": {"timeout": 2}},
    "relay": {"pool_size": 1, "max_overflow": 0},
    "scheduler": {"pool_size": 1, "max_overflow": 0},  # it fires on its leader lock's session
}


AppComponent = Callable[[App, asyncio.Event], Awaitable[None]]


async def run_on_app(
    component: AppComponent, name: str, settings: Settings, stop: asyncio.Event
) -> None:
    """Run `component` until `stop` on an App built for `name`, then close the App."""
    async with build_app(settings, component=name) as app:
        await component(app, stop)


@contextlib.asynccontextmanager
async def build_app(
    settings: Settings, *, component: str, consumers: ConsumerRegistry = CONSUMERS
) -> AsyncIterator[App]:
    """The resources of a process running `component`; all closed on exit.

    Nothing waits for a server here: the engine and Redis connect on first use, the broker
    connection in the background (a component may start while the broker is down).
    """
    runs_a_consumer = any(component == (c.command or c.name) for c in consumers)
    options = CONSUMER_ENGINE if runs_a_consumer else ENGINE_OPTIONS.get(component, {})
    engine = create_engine(settings, **options)
    amqp = AmqpConnection(settings.amqp)
    publisher = ConfirmedPublisher(amqp)
    redis = fail_fast_client(settings.redis, timeout=settings.ingress_redis_timeout)
    amqp.start()
    try:
        yield App(
            settings=settings,
            component=component,
            engine=engine,
            amqp=amqp,
            publisher=publisher,
            redis=redis,
            clock=utc_now,
            tracing=tracer_provider(f"hisho-{component}"),
            consumers=consumers,
        )
    finally:
        await publisher.close()
        await amqp.close()
        await redis.aclose()
        await engine.dispose()


@dataclass
class Prepared:
    """What `prepare()` did, so `up()` can undo exactly that."""

    stack: Stack | None = None
    started_services: list[str] = field(default_factory=list)


async def prepare(settings: Settings, prepared: Prepared, stop: asyncio.Event) -> None:
    """Start the local stack where needed, migrate, create the first admin key, declare topology.

    `prepared` records what was started as it goes; a stop request is honoured between steps.
    """
    if settings.uses_local_stack:
        prepared.stack = Stack(settings)
        prepared.started_services = await asyncio.to_thread(prepared.stack.up)
    for step in (upgrade_to_head, _bootstrap_admin_key, _declare_topology):
        if stop.is_set():
            return
        await step(settings)


async def _declare_topology(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.amqp)
    try:
        await declare_all(connection)
    finally:
        await connection.close()


ADMIN_KEY_FILE = "admin-key"


def _write_secret(path: Path, secret: str) -> Path:
    """Write `secret` to `path`, readable by this user only (the file is the one copy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(f"{secret}\n")
    path.chmod(0o600)
    return path


async def _bootstrap_admin_key(settings: Settings) -> None:
    """First start only: create a local admin API key and print it once (it is stored hashed)."""
    engine = create_engine(settings, pool_size=1)
    try:
        token = await ensure_bootstrap_admin_key(SqlApiKeyStore(engine))
    finally:
        await engine.dispose()
    if token is None:
        return
    if renders_json(settings):  # logs are kept and shipped: the secret never goes into them
        path = _write_secret(settings.stack_dir.parent / ADMIN_KEY_FILE, token)
        log.warning("local admin API key created; written once to a file", path=str(path))
        return
    log.warning("local admin API key created; it is shown only now, on stderr")
    print(f"\nhisho: local admin API key (shown once): {token}\n", file=sys.stderr)  # noqa: T201


async def up(settings: Settings, components: list[str]) -> int:
    """Run `hisho up`: prepare, supervise `components` until SIGTERM/SIGINT, clean up.

    A signal during preparation stops it between steps; either way the stack services this
    call started are stopped again, and the exit code is 0.
    """
    loop, stop, prepared = asyncio.get_running_loop(), asyncio.Event(), Prepared()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await prepare(settings, prepared, stop)
        if stop.is_set():
            return 0
        return await _supervise(settings, components, prepared)
    finally:
        if prepared.stack is not None and prepared.started_services:
            await asyncio.to_thread(prepared.stack.down, prepared.started_services)
            log.info("stack stopped", services=prepared.started_services)


async def _supervise(settings: Settings, components: list[str], prepared: Prepared) -> int:
    """Run the components (and heal the stack services `prepared` started) until a signal."""
    copies = {"relay": 1 + settings.relay_standbys, "scheduler": 1 + settings.scheduler_standbys}
    supervisor = Supervisor(instances(components, copies), status_file=status_path(settings))
    watch = None
    if prepared.stack is not None and prepared.started_services:
        stack_watch = StackWatch(prepared.stack, prepared.started_services)
        watch = asyncio.create_task(stack_watch.run(supervisor.stopping))
    try:
        return await supervisor.run()  # installs its own signal handlers
    finally:
        supervisor.stopping.set()
        if watch is not None:
            await watch
