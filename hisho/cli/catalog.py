"""`hisho catalog`: list message types, or write their JSON Schemas."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the catalog command to the root app."""

    @app.command("catalog")
    def catalog_command() -> None:
        """List every command and event type with its version and routing key."""
        raise NotImplementedError
