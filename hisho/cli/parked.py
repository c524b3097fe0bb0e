"""`hisho parked list|show|redrive|discard`: the parked-message console (infra.parked).

Acts as `system:cli`. Bad input (a malformed filter, an unknown consumer, a bad cursor)
ends with one line on stderr and exit code 2; an unknown id, or a message no longer parked,
with exit code 1; nothing is changed then. See docs/parked.md.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import asyncpg
import typer
from sqlalchemy.exc import SQLAlchemyError

from events import Actor
from hisho.consumers import CONSUMERS
from infra.amqp import AmqpConnection, ConfirmedPublisher, ConfirmUnknownError, NotPublishedError
from infra.db.engine import create_engine
from infra.db.parked import SqlParkedMessages
from infra.message_context import MessageContext
from infra.parked import (
    MAX_BULK,
    NotParkedError,
    ParkedConsole,
    ParkedInputError,
    ParkedNotFoundError,
)
from infra.parked_broker import AmqpParkedBroker
from infra.settings import load_settings
from producers.ingress.parked_views import detail, summary

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from infra.db.parked import ParkedRecord

T = TypeVar("T")
CLI_ACTOR = Actor.system("cli")

app = typer.Typer(help="List, show, re-drive and discard parked messages (every consumer's).")

_ID = Annotated[str, typer.Argument(help="The parked message's id (its message id).")]
_CONSUMER = Annotated[str | None, typer.Option("--consumer", help="Only this consumer's.")]
_ERROR = Annotated[str | None, typer.Option("--error-type", help="Only this exception type.")]
_OLDER = Annotated[
    str | None, typer.Option("--older-than", help="Parked before: 30s, 15m, 2h, 7d.")
]
_YOUNGER = Annotated[str | None, typer.Option("--younger-than", help="Parked since: 30s, 2h, 7d.")]
_DRY = Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")]


def _fail(message: str, code: int) -> NoReturn:
    print(f"hisho: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _with_console(work: Callable[[ParkedConsole], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = load_settings()
        engine = create_engine(settings, pool_size=2)
        connection = AmqpConnection(settings.amqp)
        publisher = ConfirmedPublisher(connection)
        broker = AmqpParkedBroker(connection.connected, publisher)
        try:
            store = SqlParkedMessages(engine)
            return await work(ParkedConsole(store, broker, consumers=CONSUMERS.names()))
        finally:
            await publisher.close()
            await connection.close()
            await engine.dispose()

    try:
        return asyncio.run(run())
    except ParkedInputError as exc:
        _fail(str(exc), 2)
    except (ParkedNotFoundError, NotParkedError) as exc:
        _fail(str(exc), 1)
    except (NotPublishedError, ConfirmUnknownError) as exc:
        _fail(f"the broker did not confirm the re-drive: {exc}", 1)
    except (OSError, TimeoutError, SQLAlchemyError, asyncpg.PostgresError) as exc:
        _fail(f"cannot reach the database or the broker: {exc!r}", 1)


def _line(record: ParkedRecord) -> str:
    at = record.parked_at.isoformat(timespec="seconds")
    reason = record.reason if len(record.reason) <= 80 else record.reason[:77] + "..."  # noqa: PLR2004
    where = f"{record.consumer}  {record.state}  {at}"
    return f"{record.message_id}  {where}  {record.error_type}: {reason}"


def _redrove(record: ParkedRecord, *, dry_run: bool) -> str:
    done = "would re-drive" if dry_run else "re-drove"
    return f"{done} {record.message_id} to {record.consumer}"


@app.command("list")
def list_command(  # noqa: PLR0917  (typer passes every option positionally)
    consumer: _CONSUMER = None,
    error_type: _ERROR = None,
    older_than: _OLDER = None,
    younger_than: _YOUNGER = None,
    state: Annotated[
        str, typer.Option("--state", help="parked (default), redriven, discarded or all.")
    ] = "parked",
    limit: Annotated[int, typer.Option("--limit", help="At most this many (1-200).")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="From a `next:` line.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Parked messages in parking order, then their counts by error type."""

    async def work(console: ParkedConsole) -> Any:  # noqa: ANN401
        which = await console.filter(
            consumer=consumer,
            error_type=error_type,
            older_than=older_than,
            younger_than=younger_than,
            state=None if state == "all" else state,
        )
        return await console.list(which, cursor=cursor, limit=limit)

    page = _with_console(work)
    if as_json:
        groups = [
            {"error_type": g.error_type, "count": g.count, "consumers": list(g.consumers)}
            for g in page.groups
        ]
        items = [summary(r) for r in page.items]
        document = {"items": items, "next_cursor": page.next_cursor, "groups": groups}
        print(json.dumps(document, default=str))
        return
    for record in page.items:
        print(_line(record))
    if page.next_cursor:
        print(f"next: --cursor {page.next_cursor}")
    for group in page.groups:
        print(f"{group.count:6}  {group.error_type}  ({', '.join(group.consumers)})")


@app.command("show")
def show_command(message_id: _ID, consumer: _CONSUMER = None) -> None:
    """One parked message as JSON: its record, headers and body (decoded when it can be)."""
    record = _with_console(lambda console: console.show(message_id, consumer=consumer))
    print(detail(record).model_dump_json(indent=2))


@app.command("redrive")
def redrive_command(  # noqa: PLR0917  (typer passes every option positionally)
    message_id: Annotated[str | None, typer.Argument(help="One message's id (or --all).")] = None,
    redrive_all: Annotated[
        bool, typer.Option("--all", help="Every one the filters select.")
    ] = False,
    consumer: _CONSUMER = None,
    error_type: _ERROR = None,
    older_than: _OLDER = None,
    younger_than: _YOUNGER = None,
    rate: Annotated[float, typer.Option("--rate", help="Messages per second (--all).")] = 10.0,
    limit: Annotated[int, typer.Option("--limit", help=f"At most (--all; to {MAX_BULK}).")] = 1000,
    dry_run: _DRY = False,
) -> None:
    """Send parked messages back to their consumer alone, with their ids."""
    by = CLI_ACTOR.principal
    if message_id is None and not redrive_all:
        _fail("give a message id or --all", 2)
    if message_id is not None and redrive_all:
        _fail("give a message id or --all, not both", 2)
    if message_id is not None:
        if any(value is not None for value in (error_type, older_than, younger_than)):
            _fail("filters go with --all", 2)
        one = _with_console(
            lambda console: console.redrive(message_id, by=by, consumer=consumer, dry_run=dry_run)
        )
        (record,) = one.selected
        applied = " (applied already: marked only)" if one.already_applied else ""
        print(_redrove(record, dry_run=dry_run) + applied)
        return

    async def work(console: ParkedConsole) -> Any:  # noqa: ANN401
        which = await console.filter(
            consumer=consumer,
            error_type=error_type,
            older_than=older_than,
            younger_than=younger_than,
        )
        return await console.redrive_all(which, by=by, rate=rate, limit=limit, dry_run=dry_run)

    done = _with_console(work)
    for record in done.selected:
        print(_redrove(record, dry_run=dry_run))
    if not dry_run:
        print(f"sent {done.sent}; applied already (marked only) {done.already_applied}")


@app.command("discard")
def discard_command(
    message_id: _ID,
    consumer: _CONSUMER = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (in the audit log).")] = "",
) -> None:
    """Discard one parked message: never applied; recorded in the audit log."""
    if len(reason) > 500 or any(ord(c) < 32 or ord(c) == 127 for c in reason):  # noqa: PLR2004
        _fail("--reason must be one line of at most 500 characters", 2)
    context = MessageContext.start(CLI_ACTOR)
    record = _with_console(
        lambda console: console.discard(
            message_id, reason=reason, context=context, consumer=consumer
        )
    )
    print(f"discarded {record.message_id} of {record.consumer}")
