"""HTTP-accepted -> processed latency of the command path, at a fixed rate (issues 5 and 14).

Two mixes, chosen with `--mix`:

`single` (the default, so figures stay comparable with earlier runs): an open-loop load
generator posts `CreateProject` commands to a real `hisho run ingress` at `rate` per second
for `duration` seconds. A command's latency is the time from its `202` reaching the client
to the commit of the processor's transaction that recorded it `processed` (PostgreSQL's
commit timestamp of its `command_status` row, with `track_commit_timestamp`, as the stack
runs it): from then on `GET /v1/commands/{id}` says `processed`. Target: p99 <= 50 ms at
300 commands/s for 30 s. A private tap queue bound to `hisho.events` also times the first
event of each command as a subscriber sees it (the relay hop included).

`stories`: the client stories of tests/stories.py (create a project and wait until it is
decided, draft a plan, submit it on the draft's 202, two approvals at once on the submit's
202; every POST with an `Idempotency-Key`), started at `rate / 5` stories per second. Per
command it reports POST -> 202, POST -> decided (commit timestamp) and POST -> first event
at a tap bound to every event (p50/p95/p99/max, and per command type); target: POST -> first
event p99 <= 100 ms at 200 commands/s. The outcomes are counted by problem code afterwards
(`plan-not-found` / `plan-not-submitted` mean a command was decided before one its client
sent earlier), and the status GETs the stories made (to wait for their project) per command.

Both print the CPU milliseconds per command of every process (with its children): ingress,
processor, relay, PostgreSQL, RabbitMQ, Redis, the load generator; psutil CPU times before
and after the measured window, which ends when every command is decided and has its event.

Steady state, not start-up, is measured: a warm-up at the same rate first lets the
processor's pool connect and prepare its statements, and the run waits until the warm-up's
commands are worked off. The load generator runs at a lower CPU priority (nice +10): it
shares the 2 cores with what it measures, and a real client is not on the server's box.

Run it on its own (it starts relay, processor and ingress as `hisho up` does, in a database
and vhost of its own that are dropped afterwards, tests/isolation.py):

    python -m bench.processor_latency [--mix single|stories] [--rate 300] [--duration 30]

`bench/ingress.py` calls `main` for its latency row (single mix).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import psutil
import uvloop

from infra.settings import load_settings
from infra.stack import Stack
from infra.topology import EVENTS_EXCHANGE
from tests.components_support import component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli
from tests.stories import COMMANDS_PER_STORY, Accepted, Stories, voters_of

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Mapping

    from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

WARMUP_SECONDS = 5.0
LOAD_GENERATOR_NICE = 10
IN_FLIGHT = 128
DRAIN_DEADLINE = 300.0
TARGET_P99_MS = 50.0
STORY_TARGET_P99_MS = 100.0  # POST -> first event, story mix at 200 commands/s
EVENT = "POST -> first event"


def _kind(error: str) -> str:
    """An error without its story number and ids, to count alike errors together."""
    return re.sub(r"story \d+|[0-9a-f]{8}-[0-9a-f-]{27}", "…", error)


def _shorten(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _nearest(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class LatencyReport:
    """What one latency run measured."""

    rate: float
    duration: float
    sent: int
    accepted: int
    achieved_rate: float
    processed_ms: list[float]  # 202 -> commit of the `processed` record
    clock: str  # where the commit times come from
    event_ms: list[float]  # 202 -> first event on the tap
    cpu_ms_per_command: dict[str, float]

    def percentile(self, p: float) -> float:
        """The p-th percentile of 202 -> processed in ms, nearest rank."""
        return _nearest(self.processed_ms, p)

    def rows(self) -> list[tuple[str, str]]:
        """The table rows this run contributes."""
        verdict = "met" if self.percentile(99) <= TARGET_P99_MS else "MISSED"
        return [
            ("target rate (commands/s)", f"{self.rate:.0f}"),
            ("achieved rate (202/s)", f"{self.achieved_rate:.0f}"),
            ("accepted / sent", f"{self.accepted} / {self.sent}"),
            ("processed (commit times from)", f"{len(self.processed_ms)} ({self.clock})"),
            ("accepted -> processed p50 (ms)", f"{self.percentile(50):.1f}"),
            ("accepted -> processed p90 (ms)", f"{self.percentile(90):.1f}"),
            (
                "accepted -> processed p99 (ms)",
                f"{self.percentile(99):.1f}  (target <= {TARGET_P99_MS:.0f}: {verdict})",
            ),
            ("accepted -> processed max (ms)", f"{max(self.processed_ms, default=0):.1f}"),
            ("with an event on the tap", f"{len(self.event_ms)}"),
            ("accepted -> event p50 (ms)", f"{_nearest(self.event_ms, 50):.1f}"),
            ("accepted -> event p99 (ms)", f"{_nearest(self.event_ms, 99):.1f}"),
            *(
                (f"CPU ms per command: {name}", f"{ms:.2f}")
                for name, ms in self.cpu_ms_per_command.items()
            ),
        ]


class _Tap:
    """First-event arrival time per causation id, from a private queue on `hisho.events`."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.missing: set[str] | None = None
        self.complete = asyncio.Event()

    def on_message(self, message: AbstractIncomingMessage) -> None:
        cause = json.loads(message.body).get("causation_id")
        if cause is not None:
            self.arrived.setdefault(cause, time.time())
            self._check(cause)

    def expect(self, command_ids: set[str]) -> None:
        """Set `complete` once every one of `command_ids` has an event."""
        self.missing = command_ids - set(self.arrived)
        self._check(None)

    def _check(self, cause: str | None) -> None:
        if self.missing is not None:
            self.missing.discard(cause or "")
            if not self.missing:
                self.complete.set()


async def _consume(
    rabbit: AbstractRobustConnection, tap: _Tap, routing_key: str = "project.created"
) -> aio_pika.abc.AbstractChannel:
    channel = await rabbit.channel()
    await channel.set_qos(prefetch_count=1_000)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(EVENTS_EXCHANGE, routing_key)

    async def on_message(message: AbstractIncomingMessage) -> None:
        tap.on_message(message)

    await queue.consume(on_message, no_ack=True)
    return channel


class _StaleConnectionError(ConnectionError):
    """The server closed a kept-alive connection before answering."""


class _Exchange(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, the answer parsed in place."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.open = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._answer

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._answer is None:
            return
        head = bytes(self._buffer[:end])
        length = _content_length(head)
        if len(self._buffer) < end + 4 + length:
            return
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        self._answer.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002  (any loss)
        self.open = False
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(_StaleConnectionError())


def request_bytes(
    method: str, path: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """One HTTP/1.1 request as sent on the wire (`Content-Length` when there is a body)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client for the load generator.

    httpx costs about 6 ms of CPU per request on this kind of box, which a 2-core machine
    cannot spare at 300 requests/s next to the servers it measures; this costs a fraction
    (a protocol object per connection, the answer parsed from one buffer). It speaks only
    what the ingress answers: `Content-Length` bodies, no chunking.
    """

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._host = parts.netloc
        self._headers = {"Content-Type": "application/json", **headers}
        self._idle: list[_Exchange] = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST `body` (JSON) to `path` with the client's headers; return status and body."""
        return await self._send(request_bytes("POST", path, self._host, self._headers, body))

    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """Send `method path` with exactly `headers` (tests/stories.py's `Transport`)."""
        return await self._send(request_bytes(method, path, self._host, headers, body))

    async def _send(self, data: bytes) -> tuple[int, bytes]:
        """Send one request; return the status code and the response body.

        A kept-alive connection the server closed while it was idle answers nothing (or is
        reset): the request is sent again once on a new connection.
        """
        while self._idle:
            exchange = self._idle.pop()
            if exchange.open:
                with contextlib.suppress(ConnectionError):  # stale or reset
                    return await self._exchange(exchange, data)
        _, exchange = await asyncio.get_running_loop().create_connection(_Exchange, *self._address)
        return await self._exchange(exchange, data)

    async def _exchange(self, exchange: _Exchange, data: bytes) -> tuple[int, bytes]:
        try:
            answer = await exchange.request(data)
        except BaseException:
            if exchange.transport is not None:
                exchange.transport.close()
            raise
        self._idle.append(exchange)
        return answer

    def close(self) -> None:
        """Close every idle connection."""
        for exchange in self._idle:
            if exchange.transport is not None:
                exchange.transport.close()
        self._idle.clear()


async def _post(http: RawHttp, n: int, accepted: dict[str, float]) -> None:
    policy = {"approvers": ["key:alice"], "required_approvals": 1}
    body = {"project_id": str(uuid.uuid4()), "name": f"bench {n}", "policy": policy}
    try:
        status, answer = await http.post("/v1/commands/CreateProject", json.dumps(body).encode())
    except (OSError, ValueError, IndexError) as exc:
        print(f"request {n} failed: {exc!r}")
        return
    if status == 202:
        accepted[json.loads(answer)["command_id"]] = time.time()
    else:
        print(f"request {n}: {status} {answer[:200]!r}")


async def _open_loop(http: RawHttp, rate: float, count: int) -> dict[str, float]:
    accepted: dict[str, float] = {}
    gate = asyncio.Semaphore(IN_FLIGHT)
    start = time.perf_counter()

    async def one(n: int) -> None:
        async with gate:
            await _post(http, n, accepted)

    tasks = []
    for n in range(count):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return accepted


async def _backlog_worked_off(database_url: str) -> None:
    """Wait until the processor has worked off commands queued before this run (those of
    bench/ingress.py's throughput rounds, say), so they count in neither CPU nor latency:
    until no command was decided for a second (bounded). It reads only `command_status`, so
    it holds whichever queues the processor reads."""
    connection = await asyncpg.connect(database_url)
    deadline = time.monotonic() + DRAIN_DEADLINE
    try:
        seen = -1
        while time.monotonic() < deadline:
            decided = await connection.fetchval("SELECT count(*) FROM command_status")
            if decided == seen:
                return
            seen = decided
            await asyncio.sleep(1.0)
        print(f"the processor was still deciding earlier commands after {DRAIN_DEADLINE:.0f} s")
    finally:
        await connection.close()


async def _drained(tap: _Tap, accepted: dict[str, float]) -> None:
    tap.expect(set(accepted))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tap.complete.wait(), DRAIN_DEADLINE)


async def measure_latency(
    url: str,
    token: str,
    amqp_url: str,
    database_url: str,
    *,
    rate: float = 300,
    duration: float = 30,
    pids: Mapping[str, int] | None = None,
) -> LatencyReport:
    """Post at `rate`/s for `duration` s to the ingress at `url`; time 202 -> processed.

    `pids` (component or server name -> pid) adds the CPU time per command of each (with its
    children) to the report; a child that starts or ends during the run counts partly.
    The calling process stays at nice +10 afterwards (it is the load generator).
    """
    os.setpriority(os.PRIO_PROCESS, 0, LOAD_GENERATOR_NICE)
    processes = {name: psutil.Process(pid) for name, pid in (pids or {}).items()}
    processes["load generator"] = psutil.Process()
    rabbit = await aio_pika.connect_robust(amqp_url)
    tap = _Tap()
    headers = {"Authorization": f"Bearer {token}"}
    http = RawHttp(url, headers)
    try:
        await _backlog_worked_off(database_url)
        channel = await _consume(rabbit, tap)
        warmup = await _open_loop(http, rate, round(rate * WARMUP_SECONDS))
        await _decided(database_url, list(warmup))
        cpu_before = _cpu_seconds(processes)
        began = time.perf_counter()
        accepted = await _open_loop(http, rate, round(rate * duration))
        elapsed = time.perf_counter() - began
        http.close()
        await _drained(tap, accepted)
        cpu = _cpu_seconds(processes)
        await channel.close()
    finally:
        await rabbit.close()
    clock, committed = await _committed_at(database_url, list(accepted))
    return LatencyReport(
        rate=rate,
        duration=duration,
        sent=round(rate * duration),
        accepted=len(accepted),
        achieved_rate=len(accepted) / elapsed,
        processed_ms=[(committed[c] - t) * 1000 for c, t in accepted.items() if c in committed],
        clock=clock,
        event_ms=[(tap.arrived[c] - t) * 1000 for c, t in accepted.items() if c in tap.arrived],
        cpu_ms_per_command={
            name: 1000 * (cpu[name] - cpu_before[name]) / max(1, len(accepted)) for name in cpu
        },
    )


def _cpu_seconds(processes: Mapping[str, psutil.Process]) -> dict[str, float]:
    """CPU seconds of each process with its children (PostgreSQL's backends, say) so far."""
    seconds = {}
    for name, process in processes.items():
        total = 0.0
        own = process.pid == os.getpid()  # the load generator: its children are measured apart
        for member in [process, *([] if own else process.children(recursive=True))]:
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                total += times.user + times.system
        seconds[name] = total
    return seconds


async def _committed_at(database_url: str, command_ids: list[str]) -> tuple[str, dict[str, float]]:
    """When each command's `processed` record committed, and where that time comes from.

    The commit timestamp of the status row's transaction when the server tracks them (the
    stack's PostgreSQL does); otherwise `updated_at`, the start of that transaction (the
    processor's commit is one statement), which is up to a statement's run time early.
    """
    connection = await asyncpg.connect(database_url)
    try:
        tracked = await connection.fetchval("SELECT current_setting('track_commit_timestamp')")
        at, clock = (
            ("pg_xact_commit_timestamp(xmin)", "commit timestamps")
            if tracked == "on"
            else ("updated_at", "transaction start: track_commit_timestamp is off")
        )
        rows = await connection.fetch(
            f"SELECT command_id::text, {at} AS at FROM command_status"
            " WHERE command_id = ANY($1::uuid[])",
            command_ids,
        )
    finally:
        await connection.close()
    return clock, {row["command_id"]: row["at"].timestamp() for row in rows}


# --- the story mix: create, draft, submit, two concurrent votes per plan (tests/stories.py)


def story_latencies(
    accepted: Iterable[Accepted], decided: Mapping[str, float], arrived: Mapping[str, float]
) -> dict[str, list[float]]:
    """Per measure, the latencies in ms of the accepted commands that have one.

    `POST -> 202` (the ingress's answer), `POST -> decided` (commit of the processor's
    status record, from `decided`), `POST -> first event` (at the tap, from `arrived`), and
    `POST -> first event, <type>` per command type.
    """
    found: dict[str, list[float]] = {"POST -> 202": [], "POST -> decided": [], EVENT: []}
    for command in accepted:
        found["POST -> 202"].append((command.answered_at - command.posted_at) * 1000)
        if command.command_id in decided:
            found["POST -> decided"].append(
                (decided[command.command_id] - command.posted_at) * 1000
            )
        if command.command_id in arrived:
            ms = (arrived[command.command_id] - command.posted_at) * 1000
            found[EVENT].append(ms)
            found.setdefault(f"{EVENT}, {command.command}", []).append(ms)
    return found


@dataclass(frozen=True)
class StoryReport:
    """What one run of the story mix measured."""

    rate: float
    duration: float
    stories: int
    accepted: int
    achieved_rate: float
    errors: list[str]
    status_reads: int  # the stories' own GETs of a status within the window
    outcomes: dict[str, int]
    clock: str
    latencies: dict[str, list[float]]
    cpu_ms_per_command: dict[str, float]

    def rows(self) -> list[tuple[str, str]]:
        """The table rows this run contributes."""
        event_p99 = _nearest(self.latencies[EVENT], 99)
        verdict = "met" if event_p99 <= STORY_TARGET_P99_MS else "MISSED"
        rows = [
            ("target rate (commands/s)", f"{self.rate:.0f}"),
            ("achieved rate (202/s)", f"{self.achieved_rate:.0f}"),
            ("stories / accepted commands", f"{self.stories} / {self.accepted}"),
            ("stories that broke off", f"{len(self.errors)}"),
            *(
                (f"  broke off ({n} like this)", _shorten(error))
                for error, n in Counter(_kind(e) for e in self.errors).most_common(3)
            ),
            ("status GETs per command", f"{self.status_reads / max(1, self.accepted):.2f}"),
            *((f"outcome: {name}", f"{n}") for name, n in sorted(self.outcomes.items())),
            (
                "decided (commit times from)",
                f"{len(self.latencies['POST -> decided'])} ({self.clock})",
            ),
        ]
        for name, values in self.latencies.items():
            p50, p95, p99 = (_nearest(values, p) for p in (50, 95, 99))
            figures = f"{p50:.1f} / {p95:.1f} / {p99:.1f} / {max(values, default=0):.1f}"
            rows.append((f"{name} p50 / p95 / p99 / max (ms)", f"{figures}  (n={len(values)})"))
        rows.append(
            (f"{EVENT} p99", f"{event_p99:.1f} ms (target <= {STORY_TARGET_P99_MS:.0f}: {verdict})")
        )
        rows += [
            (f"CPU ms per command: {name}", f"{ms:.2f}")
            for name, ms in self.cpu_ms_per_command.items()
        ]
        return rows


async def _decided(database_url: str, command_ids: list[str]) -> tuple[set[str], set[str]]:
    """Wait (bounded) until every command has a final status; return (decided, processed)."""
    connection = await asyncpg.connect(database_url)
    deadline = time.monotonic() + DRAIN_DEADLINE
    try:
        while True:
            rows = await connection.fetch(
                "SELECT command_id::text, status FROM command_status"
                " WHERE command_id = ANY($1::uuid[]) AND status <> 'accepted'",
                command_ids,
            )
            if len(rows) == len(command_ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
    if len(rows) < len(command_ids):
        print(f"{len(command_ids) - len(rows)} commands undecided after {DRAIN_DEADLINE:.0f} s")
    decided = {row["command_id"] for row in rows}
    return decided, {row["command_id"] for row in rows if row["status"] == "processed"}


async def measure_stories(
    url: str,
    token: str,
    amqp_url: str,
    database_url: str,
    *,
    rate: float = 200,
    duration: float = 30,
    pids: Mapping[str, int] | None = None,
    voters: Mapping[str, str] | None = None,
) -> StoryReport:
    """Run stories for `duration` s at `rate` commands/s (rate / 5 stories/s); time them.

    The window (and the CPU measured over it) runs from the first measured story to the
    moment every accepted command is decided and every processed one has an event at the
    tap. The outcomes are read afterwards over HTTP, outside the window.
    """
    os.setpriority(os.PRIO_PROCESS, 0, LOAD_GENERATOR_NICE)
    processes = {name: psutil.Process(pid) for name, pid in (pids or {}).items()}
    processes["load generator"] = psutil.Process()
    story_rate = rate / COMMANDS_PER_STORY
    warmup_count, count = round(story_rate * WARMUP_SECONDS), round(story_rate * duration)
    rabbit = await aio_pika.connect_robust(amqp_url)
    tap = _Tap()
    http = RawHttp(url, {})
    try:
        channel = await _consume(rabbit, tap, "#")
        warmup = Stories(http, token, voters)
        await warmup.open_loop(warmup_count, rate=story_rate)
        await _decided(database_url, list(warmup.accepted))
        stories = Stories(http, token, voters)
        cpu_before = _cpu_seconds(processes)
        began = time.perf_counter()
        await stories.open_loop(count, rate=story_rate, first=warmup_count)
        elapsed = time.perf_counter() - began
        status_reads = stories.status_reads
        _, processed = await _decided(database_url, list(stories.accepted))
        tap.expect(processed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tap.complete.wait(), DRAIN_DEADLINE)
        cpu = _cpu_seconds(processes)
        await channel.close()
        outcomes = await stories.outcomes()
    finally:
        http.close()
        await rabbit.close()
    clock, committed = await _committed_at(database_url, list(stories.accepted))
    accepted = len(stories.accepted)
    return StoryReport(
        rate=rate,
        duration=duration,
        stories=count,
        accepted=accepted,
        achieved_rate=accepted / elapsed,
        errors=[repr(error) for error in stories.errors],
        status_reads=status_reads,
        outcomes=dict(outcomes),
        clock=clock,
        latencies=story_latencies(stories.accepted.values(), committed, tap.arrived),
        cpu_ms_per_command={
            name: 1000 * (cpu[name] - cpu_before[name]) / max(1, accepted) for name in cpu
        },
    )


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """Print a two-column table."""
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}\n{'-' * len(title)}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


def main(argv: list[str] | None = None) -> None:
    """Start relay, processor and ingress; measure; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mix", choices=["single", "stories"], default="single")
    parser.add_argument("--rate", type=float, help="commands/s (default 300 single, 200 stories)")
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--logs", type=Path, help="keep component logs here")
    args = parser.parse_args(argv)
    rate = args.rate or (300 if args.mix == "single" else 200)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    port = free_port()
    env = component_env(
        settings, HISHO_INGRESS_PORT=str(port), HISHO_INGRESS_RATE_LIMIT="100000000"
    )
    hisho_cli(env, "migrate")
    hisho_cli(env, "topology")  # every consumer's queues, before any consumer runs
    _, token = cli_key(env, "commands:write", "state:read")
    voters = voters_of(cli_key(env, "commands:write") for _ in range(2))  # each votes itself
    measure: Callable[..., Coroutine[None, None, LatencyReport | StoryReport]] = (
        measure_latency if args.mix == "single" else partial(measure_stories, voters=voters)
    )
    with (
        tempfile.TemporaryDirectory() as scratch,
        components(env, args.logs or Path(scratch), ("relay", "processor", "ingress")) as run,
    ):
        report: LatencyReport | StoryReport = uvloop.run(
            measure(
                f"http://127.0.0.1:{port}",
                token,
                settings.amqp,
                settings.database_dsn,
                rate=rate,
                duration=args.duration,
                pids={
                    **{name: p.pid for name, p in run.processes.items()},
                    **Stack(settings).pids(),
                },
            )
        )
    title = "HTTP-accepted -> processed" if args.mix == "single" else "Story mix: POST -> event"
    print_table(f"{title} (load average after: {_load()})", report.rows())


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


if __name__ == "__main__":
    from bench.ingress import private_resources  # the run's own database and vhost

    with private_resources():
        main()
