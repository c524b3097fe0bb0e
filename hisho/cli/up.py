"""`hisho up`: the whole system in one command."""

from __future__ import annotations

import asyncio

import typer

from hisho import bootstrap
from hisho.cli import run as run_cli
from infra.logging import configure_logging
from infra.settings import load_settings


def components() -> list[str]:
    """Every component `hisho run` knows; `hisho up` starts them all."""
    return sorted(cmd.name for cmd in run_cli.app.registered_commands if cmd.name)


def register(app: typer.Typer) -> None:
    """Add `up` to the root app."""

    @app.command("up")
    def up_command() -> None:
        """Start the stack, migrate, declare topology and run every component until Ctrl-C."""
        settings = load_settings()
        configure_logging(settings)
        raise typer.Exit(asyncio.run(bootstrap.up(settings, components())))
