"""`hisho stack up|down|status|logs|exec`: the private local stack."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run private RabbitMQ, PostgreSQL and Redis for development and tests.")
