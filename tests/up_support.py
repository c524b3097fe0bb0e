"""A private `hisho up`: its own stack (stack dir, free ports, no `HISHO_*_URL`), JSON logs.

Tests that crash RabbitMQ or the relay under `hisho up` use it, never the shared stack; so
does `bench/relay_failover.py`. Every stderr line is kept (raw) for the test to read; only
processes of this stack and this `hisho up` are ever signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.settings import load_settings
from infra.stack import Stack
from tests.components_support import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
READY_DEADLINE = 240.0  # a first start: initdb, RabbitMQ's boot, migrations, four components
_PORTS = ("AMQP", "AMQP_DIST", "AMQP_MANAGEMENT", "EPMD", "POSTGRES", "REDIS")

Event = dict[str, Any]


class PrivateUp:
    """`python -m hisho up` on a stack of its own under a temporary directory."""

    def __init__(self, **extra_env: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hisho-up-"))
        self.root.chmod(0o755)  # the postgres user must reach the cluster below it
        ports = {name: free_port() for name in _PORTS}
        self.ingress_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HISHO_")}
        self.env |= {f"HISHO_STACK_{name}_PORT": str(port) for name, port in ports.items()}
        self.env |= {
            "HISHO_STACK_DIR": str(self.root / "stack"),
            "HISHO_INGRESS_PORT": str(self.ingress_port),
            "HISHO_LOG_FORMAT": "json",
            **extra_env,
        }
        self.settings = load_settings(
            stack_dir=self.root / "stack",
            ingress_port=self.ingress_port,
            amqp_url=None,
            database_url=None,
            redis_url=None,
            **{f"stack_{name.lower()}_port": port for name, port in ports.items()},
        )
        self.stack = Stack(self.settings)
        self.lines: list[bytes] = []
        self._changed = threading.Condition()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ingress of this `hisho up`."""
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def pid(self) -> int:
        """The `hisho up` process."""
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start `hisho up`; its stderr is collected line by line in the background."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hisho", "up"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip(b"\n"))
                self._changed.notify_all()

    def events(self) -> list[Event]:
        """Every stderr line so far that is a JSON object."""
        with self._changed:
            lines = list(self.lines)
        parsed = []
        for line in lines:
            with contextlib.suppress(ValueError):
                parsed.append(json.loads(line))
        return parsed

    def wait_for(
        self, match: Callable[[Event], bool], *, timeout: float, after: int = 0, what: str = ""
    ) -> Event:
        """The first JSON event from line `after` on that `match`es, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        if isinstance(event, dict) and match(event):
                            return event
                left = deadline - time.monotonic()
                if left <= 0 or (self.process is not None and self.process.poll() is not None):
                    tail = b"\n".join(self.lines[-30:]).decode(errors="replace")
                    raise AssertionError(f"no {what or 'matching event'} in {timeout}s:\n{tail}")
                self._changed.wait(min(left, 0.5))

    def mark(self) -> int:
        """The number of lines so far (to wait for what comes after now)."""
        with self._changed:
            return len(self.lines)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`hisho ARGS` against this `hisho up`'s stack and ports."""
        return subprocess.run(
            [sys.executable, "-m", "hisho", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        """`hisho status --json`, by component name."""
        done = self.cli("status", "--json")
        assert done.stdout, done.stderr
        raw: dict[str, Any] = json.loads(done.stdout)
        return {item["name"]: item for item in raw["components"]}

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM `hisho up`; its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        """Kill `hisho up` if it still runs, stop this stack, remove the directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stack.down()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_up(**extra_env: str) -> Iterator[PrivateUp]:
    """A private `hisho up` that reached `ready`; cleaned up afterwards."""
    up = PrivateUp(**extra_env)
    try:
        up.start()
        up.wait_for(lambda e: e.get("event") == "ready", timeout=READY_DEADLINE, what="ready")
        yield up
    finally:
        up.close()
