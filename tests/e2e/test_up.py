"""`hisho up` as a user runs it: reaches "ready", stops cleanly on SIGTERM with exit code 0."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from hisho.cli.up import components
from infra.settings import Settings
from infra.stack.launcher import Stack
from tests.components_support import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

READY_DEADLINE = 120.0
STOP_DEADLINE = 30.0


def _read_events_until(
    proc: subprocess.Popen[bytes], wanted: str, deadline: float
) -> list[dict[str, object]]:
    """Collect JSON log lines from stderr until one has event == `wanted` (or time runs out)."""
    assert proc.stderr is not None
    seen: list[dict[str, object]] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    buffer = b""
    end = time.monotonic() + deadline
    while time.monotonic() < end and proc.poll() is None:
        if not sel.select(timeout=0.5):
            continue
        chunk = os.read(proc.stderr.fileno(), 65536)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            try:
                seen.append(json.loads(line))
            except ValueError:
                continue
            if seen[-1].get("event") == wanted:
                return seen
    return seen


@contextmanager
def _hisho_up(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m hisho up` with JSON logs on stderr; killed on the way out if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hisho", "up"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_up_reaches_ready_and_stops_cleanly_on_sigterm(settings: Settings) -> None:
    # Its own ingress port: another `hisho up` (the user's) may serve the default one.
    env = {**os.environ, "HISHO_LOG_FORMAT": "json", "HISHO_INGRESS_PORT": str(free_port())}
    with _hisho_up(env) as proc:
        events = _read_events_until(proc, "ready", READY_DEADLINE)
        assert events, "hisho up printed no JSON log line"
        assert events[-1]["event"] == "ready", [e.get("event") for e in events]
        assert events[-1]["components"] == sorted(
            [*components(), "relay-2", "scheduler-2"]
        )  # + standbys
        children = psutil.Process(proc.pid).children()
        assert len(children) == (
            len(components()) + settings.relay_standbys + settings.scheduler_standbys
        )

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_DEADLINE) == 0
        assert not any(child.is_running() and child.status() != "zombie" for child in children)


def test_up_stopped_while_preparing_stops_the_stack_it_started_and_exits_0() -> None:
    # mkdtemp makes a 0700 dir; the postgres user must be able to reach its data dir below it.
    root = Path(tempfile.mkdtemp(prefix="hisho-up-test-"))
    root.chmod(0o755)
    stack_dir = root / "stack"
    env = {**os.environ, "HISHO_LOG_FORMAT": "json", "HISHO_STACK_DIR": str(stack_dir)}
    for name in ("HISHO_AMQP_URL", "HISHO_DATABASE_URL", "HISHO_REDIS_URL"):
        env.pop(name, None)  # its own private stack, started by this `hisho up`
    try:
        with _hisho_up(env) as proc:
            started = _read_events_until(proc, "stack.started", READY_DEADLINE)
            assert started, "hisho up printed no JSON log line"
            assert started[-1]["event"] == "stack.started"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=READY_DEADLINE) == 0
            assert proc.stderr is not None
            rest = [
                json.loads(line) for line in proc.stderr.read().splitlines() if line[:1] == b"{"
            ]
            events = [event.get("event") for event in started + rest]
            assert "ready" not in events
            assert "stack stopped" in events
            assert Stack(Settings(stack_dir=stack_dir)).pids() == {}
    finally:
        Stack(Settings(stack_dir=stack_dir)).down()
        shutil.rmtree(root, ignore_errors=True)
