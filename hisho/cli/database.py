"""`hisho migrate` and `hisho topology`: prepare PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import sys

import aio_pika
import typer
from aiormq.exceptions import AMQPError

from hisho.consumers import CONSUMERS, declare_all
from infra.db.migrate import current_revision, downgrade, upgrade
from infra.settings import Settings, load_settings
from infra.topology import TopologyError


def register(app: typer.Typer) -> None:
    """Add the migrate and topology commands to the root app."""

    @app.command("migrate")
    def migrate_command(
        downgrade_to: str | None = typer.Option(
            None,
            "--downgrade",
            metavar="REVISION",
            help="Downgrade to REVISION (`base` removes every table) instead of upgrading.",
        ),
    ) -> None:
        """Upgrade the database to the newest schema (safe to run from several processes)."""
        settings = load_settings()
        if downgrade_to is None:
            asyncio.run(upgrade(settings, "head"))
        else:
            asyncio.run(downgrade(settings, downgrade_to))
        revision = asyncio.run(current_revision(settings))
        print(f"database at revision {revision or 'base'}")

    @app.command("topology")
    def topology_command() -> None:
        """Declare hisho's exchanges and queues on RabbitMQ (idempotent)."""
        try:
            asyncio.run(_declare(load_settings()))
        except TopologyError as exc:
            print(f"hisho: topology conflict: {exc}", file=sys.stderr)
            raise typer.Exit(1) from exc
        except (AMQPError, OSError) as exc:
            print(f"hisho: cannot declare topology: {exc!r}", file=sys.stderr)
            raise typer.Exit(1) from exc
        names = ", ".join(CONSUMERS.names())
        print(f"topology declared; queues of {len(CONSUMERS.names())} consumers: {names}")


async def _declare(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.amqp, timeout=10)
    try:
        await declare_all(connection)
    finally:
        await connection.close()
