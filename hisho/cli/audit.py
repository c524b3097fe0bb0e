"""`hisho audit verify`: check the event log's hash chain."""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg
import typer

from infra.eventlog.verify import VerifyReport, verify_chain
from infra.settings import load_settings

app = typer.Typer(help="Audit the immutable event log.", no_args_is_help=True)

PROGRESS_EVERY = 1.0  # seconds between progress lines on stderr
EXIT_BROKEN = 1


class _ProgressLine:
    """Prints 'verified up to P of N' to stderr at most once per PROGRESS_EVERY seconds."""

    def __init__(self) -> None:
        self._next = time.monotonic() + PROGRESS_EVERY

    def __call__(self, position: int, last: int) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + PROGRESS_EVERY
        share = 100 * position / last if last else 100.0
        print(f"verified up to position {position} of {last} ({share:.0f}%)", file=sys.stderr)


async def _verify(dsn: str, start: int, end: int | None) -> VerifyReport:
    connection = await asyncpg.connect(dsn)
    try:
        return await verify_chain(connection, start=start, end=end, progress=_ProgressLine())
    finally:
        await connection.close()


@app.command("verify")
def verify_command(
    start: int = typer.Option(1, "--from", min=1, help="First position to check."),
    end: int | None = typer.Option(None, "--to", min=1, help="Last position (default: last)."),
) -> None:
    """Walk the hash chain; exit 1 naming the first position whose link is broken."""
    settings = load_settings()
    report = asyncio.run(_verify(settings.database_dsn, start, end))
    if report.broken is not None:
        print(
            f"chain broken at position {report.broken.position}: {report.broken.reason}",
            file=sys.stderr,
        )
        raise typer.Exit(EXIT_BROKEN)
    if report.checked == 0:
        print(f"chain intact: no events in positions {start}..{report.end}")
    else:
        print(f"chain intact: positions {report.start}..{report.end} ({report.checked} events)")
