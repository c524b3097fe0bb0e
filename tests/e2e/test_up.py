"""`hisho up` as a user runs it: reaches "ready", stops cleanly on SIGTERM with exit code 0."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from hisho.cli.up import components

if TYPE_CHECKING:
    from infra.settings import Settings

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


def test_up_reaches_ready_and_stops_cleanly_on_sigterm(settings: Settings) -> None:
    env = {**os.environ, "HISHO_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hisho", "up"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        events = _read_events_until(proc, "ready", READY_DEADLINE)
        assert events, "hisho up printed no JSON log line"
        assert events[-1]["event"] == "ready", [e.get("event") for e in events]
        assert events[-1]["components"] == components()
        children = psutil.Process(proc.pid).children()
        assert len(children) == len(components())

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_DEADLINE) == 0
        assert not any(child.is_running() and child.status() != "zombie" for child in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
