"""HTTP-accepted -> processed latency of the command path, at a fixed rate (issue 5).

An open-loop load generator posts `CreateProject` commands to a real `hisho run ingress` at
`rate` per second for `duration` seconds; a private tap queue bound to `hisho.events` takes
the events the processor's transactions produced (published by the relay). The latency of
one command is the time from its `202` reaching the client to its first event reaching the
tap, so it includes the relay hop: an upper bound of "processed" as any subscriber sees it.
Target: p99 <= 50 ms at 300 commands/s for 30 s.

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
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import psutil

from infra.settings import load_settings
from infra.stack import Stack
from infra.topology import COMMAND_QUEUE, EVENTS_EXCHANGE
from tests.components_support import component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

WARMUP_COMMANDS = 200
IN_FLIGHT = 128
DRAIN_DEADLINE = 300.0


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
    latencies_ms: list[float]
    processed_ms: list[float]
    cpu_ms_per_command: dict[str, float]
    tapped: int

    def percentile(self, p: float) -> float:
        """The p-th percentile latency (to the event on the tap) in ms, nearest rank."""
        return _nearest(self.latencies_ms, p)

    def rows(self) -> list[tuple[str, str]]:
        """The table rows this run contributes."""
        return [
            ("target rate (commands/s)", f"{self.rate:.0f}"),
            ("achieved rate (202/s)", f"{self.achieved_rate:.0f}"),
            ("accepted / sent", f"{self.accepted} / {self.sent}"),
            ("with an event on the tap", f"{self.tapped}"),
            ("accepted -> event p50 (ms)", f"{self.percentile(50):.1f}"),
            ("accepted -> event p90 (ms)", f"{self.percentile(90):.1f}"),
            ("accepted -> event p99 (ms)", f"{self.percentile(99):.1f}  (target <= 50)"),
            ("accepted -> event max (ms)", f"{max(self.latencies_ms):.1f}"),
            ("mean (ms)", f"{statistics.fmean(self.latencies_ms):.1f}"),
            ("accepted -> committed p50 (ms)", f"{_nearest(self.processed_ms, 50):.1f}"),
            ("accepted -> committed p99 (ms)", f"{_nearest(self.processed_ms, 99):.1f}"),
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


class _StaleConnectionError(Exception):
    """The server closed a kept-alive connection before answering."""


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client for the load generator.

    httpx costs about 6 ms of CPU per request on this kind of box, which a 2-core machine
    cannot spare at 300 requests/s next to the servers it measures; this costs a fraction.
    It speaks only what the ingress answers: `Content-Length` bodies, no chunking.
    """

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        lines = [f"Host: {parts.netloc}", "Content-Type: application/json"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = "\r\n".join(lines)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST `body` (JSON) to `path`; return the status code and the response body.

        A kept-alive connection the server closed while it was idle answers nothing (or is
        reset): the request is sent again once on a new connection.
        """
        if self._idle:
            with contextlib.suppress(_StaleConnectionError, ConnectionResetError):
                return await self._exchange(*self._idle.pop(), path, body)
        return await self._exchange(*await self._connect(), path, body)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes
    ) -> tuple[int, bytes]:
        head = f"POST {path} HTTP/1.1\r\n{self._head}\r\nContent-Length: {len(body)}\r\n\r\n"
        try:
            writer.write(head.encode() + body)
            status, answer = await _response(reader)
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer))
        return status, answer

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(*self._address)

    def close(self) -> None:
        """Close every idle connection."""
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise _StaleConnectionError
    length = 0
    while (line := await reader.readline()) not in {b"\r\n", b""}:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), await reader.readexactly(length)


async def _post(http: RawHttp, n: int, accepted: dict[str, float]) -> None:
    policy = {"approvers": ["alice"], "required_approvals": 1}
    body = {"project_id": str(uuid.uuid4()), "name": f"bench {n}", "policy": policy}
    try:
        status, answer = await http.post("/v1/commands/CreateProject", json.dumps(body).encode())
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
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
    """Post at `rate`/s for `duration` s to the ingress at `url`; time 202 -> event on a tap.

    `pids` (component or server name -> pid) adds the CPU time per command of each (with its
    children) to the report; a child that starts or ends during the run counts partly.
    """
    processes = {name: psutil.Process(pid) for name, pid in (pids or {}).items()}
    processes["load generator"] = psutil.Process()
    rabbit = await aio_pika.connect_robust(amqp_url)
    tap = _Tap()
    headers = {"Authorization": f"Bearer {token}"}
    http = RawHttp(url, headers)
    try:
        await _backlog_worked_off(rabbit)
        channel = await _consume(rabbit, tap)
        await _open_loop(http, rate, WARMUP_COMMANDS)
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
    latencies = [(tap.arrived[c] - t) * 1000 for c, t in accepted.items() if c in tap.arrived]
    committed = await _committed_at(database_url, list(accepted))
    processed = [(committed[c] - t) * 1000 for c, t in accepted.items() if c in committed]
    return LatencyReport(
        rate=rate,
        duration=duration,
        sent=round(rate * duration),
        accepted=len(accepted),
        achieved_rate=len(accepted) / elapsed,
        latencies_ms=latencies or [float("nan")],
        processed_ms=processed,
        tapped=len(latencies),
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


async def _committed_at(database_url: str, command_ids: list[str]) -> dict[str, float]:
    """When each command's transaction committed (the status row's xmin commit timestamp
    needs track_commit_timestamp; `updated_at` is the transaction's start, close enough)."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT command_id::text, updated_at FROM command_status"
            " WHERE command_id = ANY($1::uuid[])",
            command_ids,
        )
    finally:
        await connection.close()
    return {row["command_id"]: row["updated_at"].timestamp() for row in rows}


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
        report = asyncio.run(
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
    print_table("HTTP-accepted -> processed (event on a tap queue)", report.rows())


if __name__ == "__main__":
    main()
