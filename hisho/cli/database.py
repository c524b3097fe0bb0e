"""`hisho migrate` and `hisho topology`: prepare PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio

import typer

from infra.db.migrate import current_revision, downgrade, upgrade
from infra.settings import load_settings


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
