"""`hisho status`: what the running `hisho up` supervises (pid, up since, restarts, ready)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from hisho.run_status import UpStatus, read_status, status_path
from infra.settings import load_settings


def _print_table(status: UpStatus) -> None:
    typer.echo(f"{'component':<12}{'pid':>8}  {'up since':<26}{'restarts':>8}  ready")
    for item in status.components:
        pid = str(item.pid) if item.pid is not None else "-"
        since = item.up_since or "-"
        ready = "yes" if item.ready else "no"
        typer.echo(f"{item.name:<12}{pid:>8}  {since:<26}{item.restarts:>8}  {ready}")
    typer.echo(f"hisho up: pid {status.pid}, since {status.started_at}")


def register(app: typer.Typer) -> None:
    """Add `status` to the root app."""

    @app.command("status")
    def status_command(
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    ) -> None:
        """Show each component of the running `hisho up`; exit 1 unless every one is ready."""
        path = status_path(load_settings())
        status = read_status(path)
        if status is None:
            typer.echo(f"hisho status: no `hisho up` is running (nothing live in {path})", err=True)
            raise typer.Exit(1)
        if as_json:
            typer.echo(json.dumps(asdict(status)))
        else:
            _print_table(status)
        if not all(item.ready for item in status.components):
            raise typer.Exit(1)
