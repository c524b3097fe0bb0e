"""The stack launcher against the real servers, on a SECOND private stack in a temp dir.

The module starts that stack once, on free ports (one of them deliberately taken), so it
never disturbs the stack the rest of the suite runs against.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from hisho.cli.stack import app as stack_app
from infra.settings import Settings
from infra.stack import Stack
from infra.stack.ports import ephemeral_port
from infra.stack.probes import redis_ping

if TYPE_CHECKING:
    from collections.abc import Iterator

LOOPBACK = {"127.0.0.1", "::1"}
PORT_FIELDS = (
    "stack_amqp_port",
    "stack_amqp_dist_port",
    "stack_amqp_management_port",
    "stack_epmd_port",
    "stack_postgres_port",
    "stack_redis_port",
)


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        ports.append(ephemeral_port(exclude=ports))
    return ports


def _stack_dir() -> Path:
    # mkdtemp makes a 0700 dir; the postgres user must be able to reach its data dir below it.
    root = Path(tempfile.mkdtemp(prefix="hisho-stack-test-"))
    root.chmod(0o755)
    return root


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HISHO_")}
    env["HISHO_STACK_DIR"] = str(settings.stack_dir)
    for field in PORT_FIELDS:
        env[f"HISHO_{field.upper()}"] = str(getattr(settings, field))
    return env | extra


def _family(pids: dict[str, int]) -> list[psutil.Process]:
    procs = []
    for pid in pids.values():
        proc = psutil.Process(pid)
        procs += [proc, *proc.children(recursive=True)]
    return procs


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _epmds_on_all_interfaces() -> list[str]:
    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN or conn.laddr.ip in LOOPBACK or conn.pid is None:
            continue
        try:
            if psutil.Process(conn.pid).name() == "epmd":
                found.append(f"{conn.laddr.ip}:{conn.laddr.port} (pid {conn.pid})")
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="module")
def taken_port() -> Iterator[int]:
    """A port some other program listens on: the stack is configured to use it for Redis."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.fixture(scope="module")
def stack(taken_port: int) -> Iterator[Stack]:
    root = _stack_dir()
    ports = dict(zip(PORT_FIELDS, _free_ports(len(PORT_FIELDS)), strict=True))
    ports["stack_redis_port"] = taken_port
    settings = Settings(stack_dir=root / "stack", **ports)  # type: ignore[arg-type]
    private = Stack(settings)
    try:
        assert private.up() == ["rabbitmq", "postgres", "redis"]
        yield private
    finally:
        private.down()
        shutil.rmtree(root, ignore_errors=True)


def test_up_starts_every_service_healthy_and_listening_on_loopback_only(stack: Stack) -> None:
    assert [(s.name, s.health) for s in stack.status()] == [
        ("rabbitmq", "running"),
        ("postgres", "running"),
        ("redis", "running"),
    ]
    listening = [
        (proc.name(), conn.laddr)
        for proc in _family(stack.pids())
        for conn in proc.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert {name for name, _ in listening} >= {"epmd", "beam.smp", "postgres", "redis-server"}
    assert all(addr.ip in LOOPBACK for _, addr in listening), listening


def test_up_twice_leaves_healthy_services_alone(stack: Stack) -> None:
    before = stack.pids()
    assert stack.up() == []
    assert stack.pids() == before
    assert all(s.health == "running" for s in stack.status())


def test_a_taken_port_is_replaced_and_recorded_for_every_hisho_process(
    stack: Stack, taken_port: int
) -> None:
    used = stack.ports["redis"]
    assert used != taken_port
    recorded = json.loads((stack.settings.stack_dir / "ports.json").read_text())
    assert recorded["redis"] == used
    fresh = Settings(
        stack_dir=stack.settings.stack_dir, stack_redis_port=taken_port, redis_url=None
    )
    assert fresh.redis == f"redis://127.0.0.1:{used}/0"
    assert redis_ping(used)


def test_the_private_broker_has_hisho_its_plugins_and_no_stray_epmd(stack: Stack) -> None:
    users = stack.rabbitmqctl("list_users", "--silent")
    assert users.returncode == 0, users.stderr
    assert "hisho" in users.stdout
    api = f"http://127.0.0.1:{stack.ports['amqp_management']}/api/overview"
    overview = httpx.get(api, auth=("hisho", "hisho"), timeout=10).json()
    assert "x-consistent-hash" in {t["name"] for t in overview["exchange_types"]}
    assert "stream" in {listener["protocol"] for listener in overview["listeners"]}
    assert _epmds_on_all_interfaces() == []


def test_status_reports_killed_and_stopped_services_and_start_brings_them_back(
    stack: Stack,
) -> None:
    runner = CliRunner()
    port = stack.ports["redis"]
    assert stack.kill_service("redis")
    assert stack.stop_service("postgres")
    health = {s.name: (s.health, s.pid) for s in stack.status()}
    assert health["redis"] == ("stopped", None)
    assert health["postgres"] == ("stopped", None)
    result = runner.invoke(stack_app, ["status"], env=_env(stack.settings))
    assert result.exit_code == 1
    assert "stopped" in result.output
    assert stack.start_service("redis")
    assert stack.start_service("postgres")
    assert stack.ports["redis"] == port
    assert runner.invoke(stack_app, ["status"], env=_env(stack.settings)).exit_code == 0


def test_postgres_recovers_from_a_crash(stack: Stack) -> None:
    assert stack.kill_service("postgres")
    assert {s.name: s.health for s in stack.status()}["postgres"] == "stopped"
    assert stack.start_service("postgres")
    assert {s.name: s.health for s in stack.status()}["postgres"] == "running"


def test_rabbitmq_restarts_after_a_crash_on_the_same_port(stack: Stack) -> None:
    port = stack.ports["amqp"]
    epmd = stack.pids()["epmd"]
    assert stack.kill_service("rabbitmq")
    assert {s.name: s.health for s in stack.status()}["rabbitmq"] == "stopped"
    assert stack.start_service("rabbitmq")
    assert stack.ports["amqp"] == port
    assert stack.pids()["epmd"] == epmd
    assert {s.name: s.health for s in stack.status()}["rabbitmq"] == "running"


def test_exec_leaves_a_stack_that_was_already_running_alone(stack: Stack) -> None:
    before = stack.pids()
    env = _env(stack.settings, HISHO_AMQP_URL="amqp://x@127.0.0.1:1/")
    result = subprocess.run(
        [sys.executable, "-m", "hisho", "stack", "exec", "--", sys.executable, "-c", "pass"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert stack.pids() == before


def _exec_env(root: Path) -> dict[str, str]:
    """Only Redis is needed: the other URLs point elsewhere (never contacted here)."""
    settings = Settings(stack_dir=root, stack_redis_port=ephemeral_port())
    return _env(
        settings,
        HISHO_AMQP_URL="amqp://x:x@127.0.0.1:1/",
        HISHO_DATABASE_URL="postgresql://x@127.0.0.1:1/x",
    )


CHECK_REDIS = (
    "import sys; from infra.settings import load_settings; "
    "from infra.stack.probes import redis_ping; "
    "s = load_settings(); sys.exit(3 if redis_ping(s.stack_ports['redis']) else 1)"
)


def test_exec_runs_the_command_and_stops_what_it_started(tmp_path: Path) -> None:
    env = _exec_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "hisho", "stack", "exec", "--", sys.executable, "-c", CHECK_REDIS],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr  # the command's own exit code
    assert not (tmp_path / "run" / "redis.pid").exists()
    assert not (tmp_path / "ports.json").exists()
    assert not redis_ping(int(env["HISHO_STACK_REDIS_PORT"]))


def _runs(pid: int, marker: str) -> bool:
    """True once a child of `pid` has `marker` in its command line."""
    for child in psutil.Process(pid).children():
        try:
            if marker in " ".join(child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def test_exec_stops_what_it_started_on_sigterm(tmp_path: Path) -> None:
    env = _exec_env(tmp_path)
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    runner = subprocess.Popen(
        [sys.executable, "-m", "hisho", "stack", "exec", "--", *sleeper],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _runs(runner.pid, "time.sleep(120)"):
            assert time.monotonic() < deadline, "the command never started"
            assert runner.poll() is None, "exec ended early"
            time.sleep(0.1)
        redis = json.loads((tmp_path / "run" / "redis.pid").read_text())["pid"]
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if runner.poll() is None:
            runner.kill()
    assert not psutil.pid_exists(redis) or not _alive(psutil.Process(redis))
    assert not (tmp_path / "run" / "redis.pid").exists()


def test_down_leaves_no_process_of_ours_behind(stack: Stack) -> None:
    family = _family(stack.pids())
    assert len(family) >= 4
    assert sorted(stack.down()) == ["postgres", "rabbitmq", "redis"]
    assert [p.pid for p in family if _alive(p)] == []
    assert stack.pids() == {}
    assert _epmds_on_all_interfaces() == []
    assert not (stack.settings.stack_dir / "ports.json").exists()
    assert all(s.health == "stopped" for s in stack.status())
