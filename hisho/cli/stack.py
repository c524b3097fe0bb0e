"""`hisho stack up|down|status|logs|exec`: the private local stack."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import typer

from infra.logging import configure_logging
from infra.settings import Settings, load_settings
from infra.stack import SERVICES, ServiceStatus, Stack, StackError
from infra.stack.process import tail

if TYPE_CHECKING:
    from types import FrameType

app = typer.Typer(
    help="Run private RabbitMQ, PostgreSQL and Redis for development and tests.",
    no_args_is_help=True,
)

ServicesArg = typer.Argument(None, help=f"Some of: {', '.join(SERVICES)} (default: all).")


def _stack(*, logging: bool = True) -> Stack:
    settings = load_settings()
    if logging:  # commands that only read (status, logs) log nothing
        configure_logging(settings)
    return Stack(settings)


def _fail(exc: StackError) -> typer.Exit:
    typer.echo(f"hisho stack: {exc}", err=True)
    return typer.Exit(1)


def _print_status(stack: Stack, rows: list[ServiceStatus]) -> None:
    ports = stack.ports
    extra = {
        "rabbitmq": f"management {ports['amqp_management']}, epmd {ports['epmd']}",
        "postgres": "",
        "redis": "",
    }
    typer.echo(f"{'service':<10}{'port':>6}  {'pid':>8}  {'health':<10} details")
    for row in rows:
        pid = str(row.pid) if row.pid is not None else "-"
        line = f"{row.name:<10}{row.port:>6}  {pid:>8}  {row.health:<10} {extra[row.name]}"
        typer.echo(line.rstrip())
    typer.echo(f"stack dir: {stack.layout.root}")


@app.command()
def up(services: list[str] | None = ServicesArg) -> None:
    """Start the stack (already-running services are left alone); print its status."""
    stack = _stack()
    try:
        stack.up(services or None)
    except StackError as exc:
        raise _fail(exc) from exc
    rows = stack.status()
    _print_status(stack, rows)
    if any(row.health != "running" for row in rows if not services or row.name in services):
        raise typer.Exit(1)


@app.command()
def down(services: list[str] | None = ServicesArg) -> None:
    """Stop the services this stack started (and its epmd); forget ports.json."""
    stack = _stack()
    try:
        stopped = stack.down(services or None)
    except StackError as exc:
        raise _fail(exc) from exc
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status() -> None:
    """Print each service's port, pid and health; exit 1 unless all are running."""
    stack = _stack(logging=False)
    rows = stack.status()
    _print_status(stack, rows)
    if any(row.health != "running" for row in rows):
        raise typer.Exit(1)


@app.command()
def logs(
    service: str | None = typer.Argument(None, help="rabbitmq, postgres, redis or epmd."),
    lines: int = typer.Option(50, "-n", "--lines", min=0, help="Lines from the end."),
) -> None:
    """Print the last lines of the services' logs."""
    stack = _stack(logging=False)
    names = [service] if service else list(SERVICES)
    if service and service not in (*SERVICES, "epmd", "initdb"):
        typer.echo(f"hisho stack: unknown service {service}", err=True)
        raise typer.Exit(2)
    for name in names:
        path = stack.log_path(name)
        if len(names) > 1:
            typer.echo(f"==> {path} <==")
        typer.echo(tail(path, lines) if path.exists() else f"(no log yet at {path})")


def _needed(settings: Settings) -> list[str]:
    """Services no `HISHO_*_URL` points elsewhere."""
    urls = {
        "rabbitmq": settings.amqp_url,
        "postgres": settings.database_url,
        "redis": settings.redis_url,
    }
    return [name for name in SERVICES if urls[name] is None]


class _SignalledError(Exception):
    """A signal arrived before the command started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminal_sent(signum: int) -> bool:
    """True when a terminal's Ctrl-C reached our whole foreground group (the child too)."""
    if signum != signal.SIGINT:
        return False
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _run(stack: Stack, services: list[str], command: list[str]) -> int:
    """Run `command` with `services` up; stop what this call started, even on SIGTERM/SIGINT."""
    child: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if child is None:
            for sig in previous:  # stopping what was started must not be interrupted in turn
                signal.signal(sig, signal.SIG_IGN)
            raise _SignalledError(signum)
        if child.poll() is None and not _terminal_sent(signum):
            child.send_signal(signum)  # the child decides; we clean up when it exits

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with stack.using(services):
            try:
                child = subprocess.Popen(command)  # noqa: S603  (the user's own command)
            except OSError as exc:
                typer.echo(f"hisho stack exec: cannot run {command[0]}: {exc}", err=True)
                return 127
            code = child.wait()
            for sig in previous:  # cleanup is bounded by deadlines: let it finish
                signal.signal(sig, signal.SIG_IGN)
            return 128 - code if code < 0 else code
    except _SignalledError as exc:
        return 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(sig, handler)


@app.command(
    "exec",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def exec_(command: list[str] = typer.Argument(..., help="The command, after `--`.")) -> None:
    """Run a command with the stack up; stop afterwards what this call started.

    Only services without a HISHO_*_URL are started. Exits with the command's exit code.
    """
    settings = load_settings()
    configure_logging(settings)
    needed = _needed(settings)
    if not needed:
        try:
            raise typer.Exit(subprocess.call(command))  # noqa: S603
        except OSError as exc:
            typer.echo(f"hisho stack exec: cannot run {command[0]}: {exc}", err=True)
            raise typer.Exit(127) from exc
    try:
        code = _run(Stack(settings), needed, command)
    except StackError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code)
