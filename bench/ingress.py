"""Ingress benchmark: accepted commands/s of the ingress vs a bare FastAPI endpoint (issue 5),
then HTTP-accepted -> processed latency (bench/processor_latency.py).

    .venv/bin/python bench/ingress.py [--requests 2000] [--concurrency 32] [--rounds 3]
                                       [--rate 300] [--duration 30] [--skip-latency]

Both servers run at the same time, each in its own process with the same uvicorn settings
(`_uvicorn_config`); the same load generator (httpx, N keep-alive connections to 127.0.0.1,
a bounded count per run) drives them in alternating rounds, so a drift in the machine's load
hits both alike. Reported per target: the median 202/s over the rounds, request latency, and
the server process's CPU time per request (steadier than wall time on a busy machine).
Target: ingress/bare >= 0.6. Services come from HISHO_*_URL or the local stack.
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
from uuid import uuid4

import httpx
import psutil
import uvicorn
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/ingress.py`

from infra.auth import Scope, SqlApiKeyStore
from infra.db.engine import create_engine
from infra.db.migrate import upgrade_to_head
from infra.settings import Settings, load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.6


# --- the servers under test


def _uvicorn_config(app: FastAPI, port: int) -> uvicorn.Config:
    """One uvicorn configuration for both servers, the ingress's own, so only the app differs."""
    from producers.ingress.serve import uvicorn_config  # noqa: PLC0415  (after sys.path)

    return uvicorn_config(app, host="127.0.0.1", port=port)


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


@dataclass
class Server:
    """A server under test: its URL and its process (for CPU time)."""

    kind: str
    url: str
    process: psutil.Process

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        times = self.process.cpu_times()
        return float(times.user + times.system)


@contextlib.contextmanager
def server(kind: str, settings: Settings) -> Iterator[Server]:
    """Run the bare app or the ingress in its own process; yield it once it is ready."""
    port = _free_port()
    args = [sys.executable, __file__, "--serve", kind, "--port", str(port)]
    process = subprocess.Popen(args, env=_env(settings), cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit(f"{kind} server did not become ready")
        yield Server(kind, url, psutil.Process(process.pid))
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the load generator


@dataclass
class Run:
    """What one load run against one server measured."""

    sent: int = 0
    accepted: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        """Accepted commands per second."""
        return self.accepted / self.seconds if self.seconds else 0.0


async def load(target: Server, token: str, count: int, concurrency: int) -> Run:
    """POST `count` SubmitPlan commands over `concurrency` connections; count the 202s."""
    run, numbers = Run(), itertools.count()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=target.url, limits=limits, timeout=30) as client:

        async def post() -> int:
            body = {"plan_id": str(uuid4())}
            response = await client.post("/v1/commands/SubmitPlan", json=body, headers=headers)
            return response.status_code

        async def worker() -> None:
            while next(numbers) < count:
                started = time.perf_counter()
                status = await post()
                run.latencies.append(time.perf_counter() - started)
                run.sent += 1
                run.accepted += status == 202

        await asyncio.gather(*(post() for _ in range(concurrency)))  # warm the connections
        cpu, started = target.cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - started
        run.cpu_seconds = target.cpu_seconds() - cpu
    return run


def _ms(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if values else 0.0


def report(runs: dict[str, list[Run]]) -> None:
    """Print one row per target (medians over the rounds) and the ratio."""
    columns = ("runs", "202", "202/s", "p50 ms", "p99 ms", "cpu us/req")
    print(f"{'target':8} " + " ".join(f"{name:>10}" for name in columns))
    rates: dict[str, float] = {}
    for kind, kind_runs in runs.items():
        rates[kind] = statistics.median(run.per_second for run in kind_runs)
        latencies = [latency for run in kind_runs for latency in run.latencies]
        accepted = sum(run.accepted for run in kind_runs)
        cpu = sum(run.cpu_seconds for run in kind_runs) / max(1, sum(r.sent for r in kind_runs))
        print(
            f"{kind:8} {len(kind_runs):>10} {accepted:>10} {rates[kind]:>10.0f} "
            f"{_ms(latencies, 0.5):>10.1f} {_ms(latencies, 0.99):>10.1f} {cpu * 1e6:>10.0f}"
        )
    per_round = [i.per_second / b.per_second for b, i in zip(*runs.values(), strict=True)]
    ratio = rates["ingress"] / rates["bare"] if rates["bare"] else 0.0
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    rounds = ", ".join(f"{value:.2f}" for value in per_round)
    print(f"ratio ingress/bare: {ratio:.2f} (rounds: {rounds}) - {verdict} the >= 0.6 target")


async def _token(settings: Settings) -> str:
    await upgrade_to_head(settings)
    engine = create_engine(settings, pool_size=1)
    try:
        issued = await SqlApiKeyStore(engine).create(scopes=[Scope.COMMANDS_WRITE], name="bench")
    finally:
        await engine.dispose()
    return issued.token


def throughput(settings: Settings, args: argparse.Namespace) -> None:
    """Alternate the same load between the two servers for `rounds` rounds; report."""
    token = asyncio.run(_token(settings))
    runs: dict[str, list[Run]] = {"bare": [], "ingress": []}
    with server("bare", settings) as bare, server("ingress", settings) as ingress:
        for _ in range(args.rounds):
            for target in (bare, ingress):
                run = asyncio.run(load(target, token, args.requests, args.concurrency))
                runs[target.kind].append(run)
    report(runs)


def main() -> None:
    """Run the benchmark (or, with --serve, one of the servers under test)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", choices=["bare", "ingress"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port)
        return
    throughput(load_settings(), args)
    if not args.skip_latency:
        # HTTP-accepted -> processed: relay, processor and ingress as `hisho up` runs them.
        from bench import processor_latency  # noqa: PLC0415

        processor_latency.main(["--rate", str(args.rate), "--duration", str(args.duration)])


if __name__ == "__main__":
    main()
