"""The `hisho` command: one typer app, each command group in its own module."""

from __future__ import annotations

import sys

import typer

from hisho.cli import audit as audit_cli
from hisho.cli import catalog as catalog_cli
from hisho.cli import database as database_cli
from hisho.cli import events as events_cli
from hisho.cli import keys as keys_cli
from hisho.cli import notifications as notifications_cli
from hisho.cli import parked as parked_cli
from hisho.cli import people as people_cli
from hisho.cli import run as run_cli
from hisho.cli import stack as stack_cli
from hisho.cli import status as status_cli
from hisho.cli import tokens as tokens_cli
from hisho.cli import up as up_cli
from infra.settings import SettingsError

app = typer.Typer(
    name="hisho",
    help="hisho: the event backbone of an AI-secretary team platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack_cli.app, name="stack")
app.add_typer(run_cli.app, name="run")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(notifications_cli.app, name="notifications")
app.add_typer(parked_cli.app, name="parked")
app.add_typer(people_cli.app, name="people")
app.add_typer(tokens_cli.app, name="tokens")
app.add_typer(events_cli.app, name="events")
catalog_cli.register(app)
database_cli.register(app)
up_cli.register(app)
status_cli.register(app)


def main() -> None:
    """Console-script entry point: bad input ends with one line on stderr and exit code 2."""
    try:
        app()
    except SettingsError as exc:
        print(f"hisho: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
