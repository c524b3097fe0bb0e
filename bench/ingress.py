"""Ingress benchmark: accepted commands/s of the ingress vs a bare FastAPI endpoint, and
HTTP-accepted -> processed latency through the command processor.

    .venv/bin/python bench/ingress.py [--requests 3000] [--concurrency 32] [--rate 300]
                                       [--seconds 30] [--skip-latency]

Both servers run as separate processes with the same uvicorn settings (`_uvicorn_config`),
and the same load generator (httpx, N keep-alive connections to 127.0.0.1, a bounded count)
drives them one after the other. Targets (issue 5): ratio >= 0.6, p99 latency <= 50 ms.
Services come from HISHO_*_URL or the local stack, as for the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import aio_pika
import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from infra.auth import Scope, SqlApiKeyStore
from infra.db.engine import create_engine
from infra.db.migrate import upgrade_to_head
from infra.db.tables import command_status
from infra.settings import Settings, load_settings
from infra.topology import COMMAND_QUEUE

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parent.parent


# --- servers under test


def _uvicorn_config(app: FastAPI, port: int) -> uvicorn.Config:
    """One uvicorn configuration for both servers, so only the app differs."""
    return uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )


def bare_app() -> FastAPI:
    """The baseline: a FastAPI endpoint that parses the JSON body and answers 202."""
    app = FastAPI()

    @app.post("/v1/commands/{command_type}", status_code=202)
    async def accept(command_type: str, body: dict[str, Any]) -> dict[str, str]:  # noqa: ARG001
        command_id = uuid4()
        return {"command_id": str(command_id), "status_url": f"/v1/commands/{command_id}"}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def _serve(kind: str, port: int) -> None:
    if kind == "bare":
        app = bare_app()
    else:
        from producers.ingress import create_app  # noqa: PLC0415

        app = create_app(settings=load_settings())
    asyncio.run(uvicorn.Server(_uvicorn_config(app, port)).serve())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "HISHO_AMQP_URL": settings.amqp,
        "HISHO_DATABASE_URL": settings.database_dsn,
        "HISHO_REDIS_URL": settings.redis,
        "HISHO_INGRESS_RATE_LIMIT": "100000000",
        "HISHO_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(args, env=env, cwd=ROOT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def server(kind: str, settings: Settings) -> Iterator[str]:
    """Run the bare app or the ingress in its own process; yield its base URL once ready."""
    port = _free_port()
    args = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    with _process(args, _env(settings)) as process:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit(f"{kind} server did not become ready")
        yield url


# --- load generator


@dataclass
class Run:
    """What one load run measured."""

    target: str
    sent: int = 0
    accepted: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        """Accepted commands per second."""
        return self.accepted / self.seconds if self.seconds else 0.0


def _body() -> dict[str, str]:
    return {"plan_id": str(uuid4())}


async def load(target: str, url: str, token: str, count: int, concurrency: int) -> Run:
    """POST `count` commands over `concurrency` connections; count the 202s."""
    run, numbers = Run(target), itertools.count()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while next(numbers) < count:
                started = time.perf_counter()
                response = await client.post(
                    "/v1/commands/SubmitPlan", json=_body(), headers=headers
                )
                run.latencies.append(time.perf_counter() - started)
                run.sent += 1
                run.accepted += response.status_code == 202

        warmup = min(200, count)
        for _ in range(warmup):
            await client.post("/v1/commands/SubmitPlan", json=_body(), headers=headers)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - started
    return run


def _ms(values: list[float], quantile: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


def print_throughput(runs: list[Run]) -> None:
    """The throughput table and the ratio."""
    columns = ("sent", "202", "seconds", "202/s", "p50 ms", "p99 ms")
    print(f"{'target':8} " + " ".join(f"{name:>8}" for name in columns))
    for run in runs:
        print(
            f"{run.target:8} {run.sent:8d} {run.accepted:8d} {run.seconds:8.2f} "
            f"{run.per_second:8.0f} {_ms(run.latencies, 0.5):8.1f} {_ms(run.latencies, 0.99):8.1f}"
        )
    bare, ingress = runs
    ratio = ingress.per_second / bare.per_second if bare.per_second else 0.0
    verdict = "meets" if ratio >= 0.6 else "MISSES"
    print(f"ratio ingress/bare: {ratio:.2f} ({verdict} the >= 0.6 target)")


# --- accepted -> processed


async def _paced(url: str, token: str, rate: float, seconds: float) -> dict[UUID, float]:
    """Post RegisterPersona at `rate`/s (open loop) for `seconds`; id -> wall time of its 202."""
    accepted: dict[UUID, float] = {}
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one() -> None:
            persona_id = uuid4()
            body = {
                "persona_id": str(persona_id),
                "name": "bench",
                "role": "bench",
                "provider": "echo",
                "model": "echo-1",
                "system_prompt": "",
            }
            response = await client.post("/v1/commands/RegisterPersona", json=body, headers=headers)
            if response.status_code == 202:
                accepted[UUID(response.json()["command_id"])] = time.time()

        start, tasks = time.monotonic(), []
        for number in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + number / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return accepted


async def _processed_at(engine: AsyncEngine, ids: list[UUID], wait: float) -> dict[UUID, float]:
    """Poll command_status until every id is recorded (or `wait` runs out)."""
    found: dict[UUID, float] = {}
    deadline = time.monotonic() + wait
    while len(found) < len(ids) and time.monotonic() < deadline:
        missing = [command_id for command_id in ids if command_id not in found]
        async with engine.connect() as conn:
            for chunk in (missing[n : n + 1000] for n in range(0, len(missing), 1000)):
                rows = await conn.execute(
                    select(command_status.c.command_id, command_status.c.updated_at).where(
                        command_status.c.command_id.in_(chunk)
                    )
                )
                found.update({row.command_id: row.updated_at.timestamp() for row in rows})
        await asyncio.sleep(0.5)
    return found


async def _drain_backlog(settings: Settings, wait: float = 300) -> None:
    """Let the processor work off what is queued already (the throughput runs' commands)."""
    connection = await aio_pika.connect(settings.amqp)
    try:
        channel = await connection.channel()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            queue = await channel.declare_queue(COMMAND_QUEUE, passive=True)
            if not queue.declaration_result.message_count:
                return
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


async def latency(settings: Settings, url: str, token: str, rate: float, seconds: float) -> None:
    """Accepted -> processed at `rate`/s for `seconds`, with a command processor running."""
    engine = create_engine(settings)
    try:
        await _drain_backlog(settings)
        accepted = await _paced(url, token, rate, seconds)
        processed = await _processed_at(engine, list(accepted), 120)
    finally:
        await engine.dispose()
    # `updated_at` is the processor transaction's now() (its start), so this slightly
    # under-counts by the transaction's own duration; negative means processed before the
    # client had read its 202.
    delays = [processed[i] - accepted[i] for i in accepted if i in processed]
    print(f"accepted -> processed at {rate:.0f}/s for {seconds:.0f} s: ", end="")
    print(
        f"{len(accepted)} accepted, {len(delays)} processed, {len(accepted) - len(delays)} missing"
    )
    if delays:
        p99 = _ms(delays, 0.99)
        verdict = "meets" if p99 <= 50 else "MISSES"
        mean = 1000 * statistics.mean(delays)
        print(
            f"latency ms: p50 {_ms(delays, 0.5):.1f}  p95 {_ms(delays, 0.95):.1f}  "
            f"p99 {p99:.1f}  max {1000 * max(delays):.1f}  mean {mean:.1f}"
            f"  ({verdict} the p99 <= 50 ms target)"
        )


# --- main


async def _token(settings: Settings) -> str:
    await upgrade_to_head(settings)
    engine = create_engine(settings, pool_size=1)
    try:
        issued = await SqlApiKeyStore(engine).create(scopes=[Scope.COMMANDS_WRITE], name="bench")
    finally:
        await engine.dispose()
    return issued.token


def main() -> None:
    """Run the benchmark (or, with --serve, one of the servers under test)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", choices=["bare", "ingress"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port)
        return
    settings = load_settings()
    token = asyncio.run(_token(settings))
    runs = []
    for kind in ("bare", "ingress"):
        with server(kind, settings) as url:
            runs.append(asyncio.run(load(kind, url, token, args.requests, args.concurrency)))
    print_throughput(runs)
    if args.skip_latency:
        return
    processor = [sys.executable, "-m", "hisho", "run", "processor"]
    with server("ingress", settings) as url, _process(processor, _env(settings)):
        asyncio.run(latency(settings, url, token, args.rate, args.seconds))


if __name__ == "__main__":
    main()
