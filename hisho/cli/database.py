"""`hisho migrate` and `hisho topology`: prepare PostgreSQL and RabbitMQ."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the migrate and topology commands to the root app."""
