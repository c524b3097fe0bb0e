"""Ingress benchmark: the ingress vs a bare FastAPI endpoint at saturation, driven by `wrk`
(issue 13), then HTTP-accepted -> processed latency (bench/processor_latency.py).

    .venv/bin/python bench/ingress.py [--seconds 10] [--rounds 1] [--connections 32]
                                       [--rate 300] [--duration 30] [--skip-latency]

The load generator is `wrk` (C, one thread, keep-alive; Debian's package, installed with
`apt-get install -y wrk` when missing and run as root), with a Lua script that POSTs a fresh
`SubmitPlan` with the bench's API key: at tens of microseconds of CPU per request it is not
the bottleneck, so each server runs at saturation. The bare endpoint (`--serve bare`) and
`hisho run ingress` run in their own processes on uvloop with the same uvicorn settings, on
127.0.0.1, one at a time under load (a warm-up first, then `--seconds` each, alternating for
`--rounds`). Reported per server: 202/s, latency, errors, server CPU per request (psutil) and
CPU x rate (cores used: ~1 at saturation of one process), and wrk's own CPU; then the
throughput ratio and the CPU-per-request ratio, ingress/bare (target >= 0.6 for both).

Everything runs in a private database and vhost created for the run and dropped after it
(tests/isolation.py), on the servers HISHO_*_URL or the local stack name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/ingress.py`

from bench.ingress_report import Measured, WrkResult, parse_wrk, report

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
WRK_INSTALL = ["apt-get", "install", "-y", "wrk"]
WARMUP_SECONDS = 2
PATH = "/v1/commands/SubmitPlan"
BENCH_REDIS_DB = 14  # not the user's (0) nor the test session's (15)

LUA = Template("""\
-- written by bench/ingress.py: POST a fresh SubmitPlan with the bench's API key
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format('{"plan_id":"$prefix-%012x"}', n))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("hisho-bench requests=%d duration_us=%d status_errors=%d "
    .. "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d p50_us=%d p99_us=%d\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
""")


# --- wrk


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian's packages when missing and root."""
    if found := shutil.which("wrk"):
        return found
    if os.geteuid() != 0:
        raise SystemExit(f"bench: wrk is missing; install it with: sudo {' '.join(WRK_INSTALL)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"bench: installing wrk: {' '.join(WRK_INSTALL)}", flush=True)
    if subprocess.run(WRK_INSTALL, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(WRK_INSTALL, env=env, check=True)
    if found := shutil.which("wrk"):
        return found
    raise SystemExit("bench: wrk was installed but is not on PATH")


def wrk_script(token: str) -> str:
    """The Lua script: method, headers, a unique plan id per request, a parseable summary."""
    prefix = str(uuid4())[:23]  # 8-4-4-4 of a random v4 UUID; the counter fills the last 12
    return LUA.substitute(token=token, prefix=prefix)


def wrk_command(wrk: str, script: Path, url: str, connections: int, seconds: int) -> list[str]:
    """One wrk run: one thread, `connections` keep-alive connections, `seconds` long."""
    return [
        wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(script), f"{url}{PATH}",
    ]  # fmt: skip


def run_wrk(command: list[str]) -> tuple[WrkResult, float]:
    """Run wrk to its end; its result and the CPU seconds it used (reaped child rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench: wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return parse_wrk(done.stdout), cpu


# --- the servers under test


def bare_app() -> Any:  # noqa: ANN401  (a FastAPI app; fastapi is imported in the server only)
    """The baseline: a FastAPI endpoint that parses the JSON body and answers 202."""
    from fastapi import FastAPI  # noqa: PLC0415

    app = FastAPI()

    @app.post("/v1/commands/{command_type}", status_code=202)
    async def accept(command_type: str, body: dict[str, Any]) -> dict[str, str]:  # noqa: ARG001
        command_id = uuid4()
        return {"command_id": str(command_id), "status_url": f"/v1/commands/{command_id}"}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def serve_bare(port: int) -> None:
    """Serve the baseline as `hisho run ingress` serves the ingress: uvloop, same config."""
    import uvicorn  # noqa: PLC0415
    import uvloop  # noqa: PLC0415

    from producers.ingress.serve import uvicorn_config  # noqa: PLC0415

    uvloop.run(uvicorn.Server(uvicorn_config(bare_app(), host="127.0.0.1", port=port)).serve())


@dataclass
class Server:
    """A server under test: its name, URL and process id (for its CPU time)."""

    kind: str
    url: str
    pid: int


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time a process used so far; with `children`, its descendants' too.

    A descendant that ended and was reaped (a PostgreSQL backend) is in its parent's
    `children_*` times, a live one in its own, so neither is lost nor counted twice.
    """
    import psutil  # noqa: PLC0415

    process = psutil.Process(pid)
    times = process.cpu_times()
    total = float(times.user + times.system)
    if not children:
        return total
    total += times.children_user + times.children_system
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return float(total)


def stack_pids() -> dict[str, int]:
    """The local stack's servers (RabbitMQ, PostgreSQL, Redis) by name; none for remote ones."""
    from infra.settings import load_settings  # noqa: PLC0415
    from infra.stack import Stack  # noqa: PLC0415

    pids = Stack(load_settings()).pids()
    return {name: pid for name, pid in pids.items() if name != "epmd"}


@contextlib.contextmanager
def bare_server(env: dict[str, str]) -> Iterator[Server]:
    """Run the bare endpoint in its own process; yield it once it answers."""
    import httpx  # noqa: PLC0415

    from tests.components_support import free_port  # noqa: PLC0415

    port = free_port()
    args = [sys.executable, __file__, "--serve", "bare", "--port", str(port)]
    process = subprocess.Popen(args, env=env, cwd=ROOT)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit("bench: the bare server did not start")
        yield Server("bare", url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextlib.contextmanager
def private_resources() -> Iterator[None]:
    """Point HISHO_*_URL at a database and vhost of the run's own; drop them afterwards."""
    from tests.isolation import TestResources, user_servers  # noqa: PLC0415

    servers = user_servers()
    resources = TestResources.create(servers)
    saved = dict(os.environ)
    os.environ.update(resources.environment())
    os.environ["HISHO_REDIS_URL"] = f"{servers.redis.rsplit('/', 1)[0]}/{BENCH_REDIS_DB}"
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        resources.drop()


@contextlib.contextmanager
def ingress_server(log_dir: Path) -> Iterator[tuple[dict[str, str], str, Server]]:
    """`hisho run ingress` on a migrated database and declared topology; with a key."""
    from tests.components_support import components, free_port  # noqa: PLC0415
    from tests.ingress_support import cli_key, hisho_cli  # noqa: PLC0415

    port = free_port()
    env = {
        **os.environ,
        "HISHO_INGRESS_PORT": str(port),
        "HISHO_INGRESS_RATE_LIMIT": "100000000",
        "HISHO_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    hisho_cli(env, "migrate")
    hisho_cli(env, "topology")
    _, token = cli_key(env, "commands:write")
    with components(env, log_dir, ("ingress",)) as running:
        pid = running.processes["ingress"].pid
        yield env, token, Server("ingress", f"http://127.0.0.1:{port}", pid)


# --- the measurement


def measure(target: Server, command: list[str], services: dict[str, int]) -> Measured:
    """One wrk run against `target`, with the server's, wrk's and the stack's CPU over it."""
    before = {name: cpu_seconds(pid, children=True) for name, pid in services.items()}
    cpu = cpu_seconds(target.pid)
    result, client_cpu = run_wrk(command)
    server_cpu = cpu_seconds(target.pid) - cpu
    stack = {name: cpu_seconds(pid, children=True) - before[name] for name, pid in services.items()}
    return Measured(target.kind, result, server_cpu, client_cpu, stack)


def throughput(args: argparse.Namespace, wrk: str, scratch: Path) -> None:
    """Warm both servers up, then alternate `rounds` measured runs; print the report."""
    script = scratch / "submit_plan.lua"
    print(f"cores: {os.cpu_count()}, load average before: {_load()}", flush=True)
    with ingress_server(scratch) as (env, token, ingress), bare_server(env) as bare:
        script.write_text(wrk_script(token))
        runs: dict[str, list[Measured]] = {"bare": [], "ingress": []}
        services = stack_pids()
        for target in (bare, ingress):
            run_wrk(wrk_command(wrk, script, target.url, args.connections, WARMUP_SECONDS))
        for _ in range(args.rounds):
            for target in (bare, ingress):
                command = wrk_command(wrk, script, target.url, args.connections, args.seconds)
                print(f"$ {' '.join(command)}", flush=True)
                runs[target.kind].append(measure(target, command, services))
    print(f"load average after: {_load()}")
    print("\n".join(report(runs)))
    print(f"purged {asyncio.run(purge_commands())} benchmark commands from the private vhost")


async def purge_commands() -> int:
    """Drop the commands the load left in the (private) processor partition queues: nobody is
    to run them."""
    import aio_pika  # noqa: PLC0415

    from tests.processor_support import purge_commands as purge  # noqa: PLC0415

    connection = await aio_pika.connect(os.environ["HISHO_AMQP_URL"])
    try:
        return await purge(await connection.channel())
    finally:
        await connection.close()


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    """Run the benchmark (or, with --serve bare, the baseline server)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", choices=["bare"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=10, help="per server and round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve_bare(args.port)
        return
    wrk = ensure_wrk()
    with private_resources(), tempfile.TemporaryDirectory() as scratch:
        throughput(args, wrk, Path(scratch))
        if not args.skip_latency:
            # HTTP-accepted -> processed: relay, processor and ingress as `hisho up` runs them.
            from bench import processor_latency  # noqa: PLC0415

            processor_latency.main(["--rate", str(args.rate), "--duration", str(args.duration)])


if __name__ == "__main__":
    main()
