"""`hisho events tail`: watch the events on `hisho.events` live, one line each.

A temporary queue (exclusive, auto-deleted: it goes when the command ends) is bound to the
topic exchange with one pattern; nothing else on the broker changes. It sees only events
published after it was bound; the event log in PostgreSQL holds the history.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TextIO
from urllib.parse import urlsplit

import aio_pika
import typer
from aiormq.exceptions import AMQPError

from events import catalog
from infra.settings import load_settings
from infra.topology import EVENTS_EXCHANGE

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue

app = typer.Typer(help="Watch the events hisho publishes.", no_args_is_help=True)

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
CONNECT_TIMEOUT = 5.0
DATA_WIDTH = 100
_WORD = re.compile(r"^(\*|#|[A-Za-z0-9_-]+)$")
_MAX_PATTERN_BYTES = 255  # AMQP short string


class TailError(Exception):
    """The tail cannot start or cannot go on; the message is the one line to print."""

    exit_code = EXIT_FAILED


class BadPatternError(TailError):
    """The pattern is not a topic pattern, or matches no event type."""

    exit_code = EXIT_BAD_INPUT


def check_pattern(pattern: str) -> str:
    """Return a valid topic pattern that matches some event type, or raise `TailError`."""
    words = pattern.split(".")
    if len(pattern.encode()) > _MAX_PATTERN_BYTES or not all(_WORD.match(w) for w in words):
        raise BadPatternError(
            f"bad pattern {pattern!r}: dot-separated words of letters, digits, '_' or '-', "
            "or '*' (one word) or '#' (any number of words), e.g. 'plan.*'"
        )
    keys = [e.routing_key for e in catalog.entries() if e.kind == "event"]
    if not any(topic_matches(words, key.split(".")) for key in keys):
        raise BadPatternError(
            f"pattern {pattern!r} matches no event type (`hisho catalog` lists the routing keys)"
        )
    return pattern


def topic_matches(pattern: list[str], key: list[str]) -> bool:
    """Whether a routing key matches a topic pattern, both split into words, as RabbitMQ does."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(topic_matches(rest, key[skip:]) for skip in range(len(key) + 1))
    return bool(key) and head in ("*", key[0]) and topic_matches(rest, key[1:])


def event_line(body: bytes, routing_key: str) -> str:
    """One readable line: position, type, aggregate and its version, event id, short data."""
    try:
        envelope: dict[str, Any] = json.loads(body)
        position, kind, event_id = envelope["position"], envelope["type"], envelope["id"]
    except (ValueError, KeyError, TypeError):
        return f"{'?':>6}  {routing_key}  (not an envelope: {len(body)} bytes)"
    aggregate_id = envelope.get("aggregate_id")
    aggregate = "-"
    if aggregate_id:
        version = envelope.get("aggregate_version")
        aggregate = f"{envelope.get('aggregate_type')} {aggregate_id} v{version}"
    data = short_data(envelope.get("data"), aggregate_id)
    return f"{position or '?':>6}  {kind}  {aggregate}  id {event_id}  {data}"


def short_data(data: object, aggregate_id: object) -> str:
    """The payload as compact JSON without the field that repeats the aggregate id, cut short."""
    if isinstance(data, dict) and aggregate_id:
        data = {key: value for key, value in data.items() if value != aggregate_id}
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= DATA_WIDTH else text[: DATA_WIDTH - 1] + "…"


def json_line(body: bytes, routing_key: str) -> str:
    """The envelope as one line of JSON (a body that is not JSON is wrapped, not dropped)."""
    try:
        return json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        raw = body.decode(errors="replace")
        return json.dumps({"routing_key": routing_key, "undecodable_body": raw})


@dataclass
class Tail:
    """What to watch and when to stop by itself."""

    pattern: str
    as_json: bool = False
    count: int | None = None
    timeout: float | None = None
    out: TextIO = sys.stdout
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _seen: int = field(default=0, init=False)
    _lost: list[BaseException | None] = field(default_factory=list, init=False)

    async def run(self, amqp_url: str) -> int:
        """Bind, print events until a signal, `count` events or `timeout`; the exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):  # before "watching" is said
            loop.add_signal_handler(signum, self._stop.set)
        try:
            connection = await _connect(amqp_url)
            try:
                return await self._watch(connection)
            finally:
                connection.close_callbacks.discard(self._on_close)
                await connection.close()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def _watch(self, connection: AbstractConnection) -> int:
        queue = await _bind(connection, self.pattern)
        connection.close_callbacks.add(self._on_close)
        await queue.consume(self._on_message, no_ack=True)
        print(
            f"hisho events tail: watching {EVENTS_EXCHANGE} for {self.pattern!r} (Ctrl-C ends)",
            file=sys.stderr,
            flush=True,
        )
        try:
            await asyncio.wait_for(self._stop.wait(), self.timeout)
        except TimeoutError:
            return EXIT_FAILED if self.count is not None else 0
        if self._lost:
            raise TailError(f"lost the connection to RabbitMQ: {_reason(self._lost[0])}")
        return 0

    def _on_close(self, _: object, exc: BaseException | None) -> None:
        self._lost.append(exc)
        self._stop.set()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stop.is_set():
            return
        render = json_line if self.as_json else event_line
        try:
            print(render(message.body, message.routing_key or ""), file=self.out, flush=True)
        except BrokenPipeError:  # `hisho events tail | head -3`: the reader is gone
            self._stop.set()
            return
        self._seen += 1
        if self.count is not None and self._seen >= self.count:
            self._stop.set()


async def _connect(amqp_url: str) -> AbstractConnection:
    parts = urlsplit(amqp_url)
    where = f"{parts.hostname}:{parts.port or 5672}"
    try:
        return await aio_pika.connect(amqp_url, timeout=CONNECT_TIMEOUT)
    except (AMQPError, OSError, TimeoutError) as exc:
        raise TailError(f"cannot reach RabbitMQ at {where}: {_reason(exc)}") from None


async def _bind(connection: AbstractConnection, pattern: str) -> AbstractQueue:
    channel = await connection.channel()
    try:
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)
    except AMQPError:
        raise TailError(
            f"exchange {EVENTS_EXCHANGE} does not exist: run `hisho topology` or `hisho up`"
        ) from None
    channel = await connection.channel()  # the passive check closed the first on failure
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, pattern)
    return queue


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@app.command("tail")
def tail_command(
    pattern: str = typer.Option("#", "--pattern", help="Topic pattern, e.g. 'plan.*'."),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per envelope.")] = False,
    count: int | None = typer.Option(None, "--count", min=1, help="Stop after N events."),
    timeout: float | None = typer.Option(None, "--timeout", min=0.1, help="Stop after S s."),
) -> None:
    """Print events as they are published until Ctrl-C/SIGTERM (exit 0), --count or --timeout.

    With --count, a --timeout that comes first exits 1.
    """
    for noisy in ("aio_pika", "aiormq"):  # their failures are told in our one line
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        check_pattern(pattern)
        tail = Tail(pattern, as_json=as_json, count=count, timeout=timeout)
        code = asyncio.run(tail.run(load_settings().amqp))
    except TailError as exc:
        print(f"hisho events tail: {exc}", file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)
