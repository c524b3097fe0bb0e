"""HTTP-accepted -> processed latency of the command path, at a fixed rate (issue 5).

An open-loop load generator posts `CreateProject` commands to a real `hisho run ingress` at
`rate` per second for `duration` seconds. A command's latency is the time from its `202`
reaching the client to the commit of the processor's transaction that recorded it
`processed` (PostgreSQL's commit timestamp of its `command_status` row, with
`track_commit_timestamp`, as the stack runs it): from then on `GET /v1/commands/{id}` says
`processed`. Target: p99 <= 50 ms at 300 commands/s for 30 s.

A private tap queue bound to `hisho.events` also times the first event of each command as a
subscriber sees it (the relay hop included); the report gives both.

Steady state, not start-up, is measured: a warm-up at the same rate first lets the
processor's pool connect and prepare its statements, and the run waits until the command
queue is empty again. The load generator runs at a lower CPU priority (nice +10): it shares
the 2 cores with what it measures, and a real client is not on the server's box.

Run it on its own (it starts relay, processor and ingress as `hisho up` does):

    python -m bench.processor_latency [--rate 300] [--duration 30]

`bench/ingress.py` calls `measure_latency` for its latency row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import psutil
import uvloop

from infra.settings import load_settings
from infra.stack import Stack
from infra.topology import COMMAND_QUEUE, EVENTS_EXCHANGE
from tests.components_support import component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

WARMUP_SECONDS = 5.0
LOAD_GENERATOR_NICE = 10
IN_FLIGHT = 128
DRAIN_DEADLINE = 300.0
TARGET_P99_MS = 50.0


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


async def _consume(rabbit: AbstractRobustConnection, tap: _Tap) -> aio_pika.abc.AbstractChannel:
    channel = await rabbit.channel()
    await channel.set_qos(prefetch_count=1_000)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(EVENTS_EXCHANGE, "project.created")

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
        lines = [f"Host: {parts.netloc}", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = "\r\n".join(lines)
        self._idle: list[_Exchange] = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST `body` (JSON) to `path`; return the status code and the response body.

        A kept-alive connection the server closed while it was idle answers nothing (or is
        reset): the request is sent again once on a new connection.
        """
        data = (
            f"POST {path} HTTP/1.1\r\n{self._head}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
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
    policy = {"approvers": ["alice"], "required_approvals": 1}
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


async def _backlog_worked_off(rabbit: AbstractRobustConnection) -> None:
    """Wait until the processor has worked off commands queued before this run (those of
    bench/ingress.py's throughput rounds, say), so they count in neither CPU nor latency."""
    channel = await rabbit.channel()
    deadline = time.monotonic() + DRAIN_DEADLINE
    try:
        while time.monotonic() < deadline:
            queue = await channel.declare_queue(COMMAND_QUEUE, passive=True)
            if queue.declaration_result.message_count == 0:
                return
            await asyncio.sleep(0.5)
        print(f"the command queue still holds a backlog after {DRAIN_DEADLINE:.0f} s")
    finally:
        await channel.close()


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
        await _backlog_worked_off(rabbit)
        channel = await _consume(rabbit, tap)
        await _open_loop(http, rate, round(rate * WARMUP_SECONDS))
        await _backlog_worked_off(rabbit)
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


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """Print a two-column table."""
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}\n{'-' * len(title)}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


def main(argv: list[str] | None = None) -> None:
    """Start relay, processor and ingress; measure; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--logs", type=Path, help="keep component logs here")
    args = parser.parse_args(argv)
    settings = load_settings()
    port = free_port()
    env = component_env(
        settings, HISHO_INGRESS_PORT=str(port), HISHO_INGRESS_RATE_LIMIT="100000000"
    )
    hisho_cli(env, "migrate")
    _, token = cli_key(env, "commands:write")
    with (
        tempfile.TemporaryDirectory() as scratch,
        components(env, args.logs or Path(scratch), ("relay", "processor", "ingress")) as run,
    ):
        report = uvloop.run(
            measure_latency(
                f"http://127.0.0.1:{port}",
                token,
                settings.amqp,
                settings.database_dsn,
                rate=args.rate,
                duration=args.duration,
                pids={
                    **{name: p.pid for name, p in run.processes.items()},
                    **Stack(settings).pids(),
                },
            )
        )
    print_table("HTTP-accepted -> processed", report.rows())


if __name__ == "__main__":
    main()
