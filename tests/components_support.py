"""hisho components as real processes, started the way `hisho up` starts them: each one is
`python -m hisho run <name>` with a readiness pipe in `HISHO_READY_FD` (infra.readiness).

Used by the e2e and chaos tiers and by `bench/ingress.py`. Every process started here is
recorded by pid and only those are signalled.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infra.readiness import READY_FD_ENV

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from infra.settings import Settings

READY_DEADLINE = 60.0
STOP_DEADLINE = 20.0


def free_port() -> int:
    """A loopback port nobody listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def component_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of a component using the same services as the tests."""
    return {
        **os.environ,
        "HISHO_AMQP_URL": settings.amqp,
        "HISHO_DATABASE_URL": settings.database_dsn,
        "HISHO_REDIS_URL": settings.redis,
        "HISHO_LOG_FORMAT": "json",
        **overrides,
    }


@dataclass
class Components:
    """Running component processes, by name; logs go to `log_dir/<name>.log`."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stop_deadline: float = STOP_DEADLINE
    _ready_r: int = -1
    _ready_w: int = -1

    def __post_init__(self) -> None:
        self._ready_r, self._ready_w = os.pipe()

    def start(self, name: str, *, wait_ready: bool = True) -> subprocess.Popen[bytes]:
        """Start `hisho run <name>`; wait (bounded) for it to report ready if asked."""
        with (self.log_dir / f"{name}.log").open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "hisho", "run", name],
                env={**self.env, READY_FD_ENV: str(self._ready_w)},
                pass_fds=(self._ready_w,),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.processes[name] = process
        if wait_ready:
            self._wait_ready(name, process)
        return process

    def _wait_ready(self, name: str, process: subprocess.Popen[bytes]) -> None:
        end = time.monotonic() + READY_DEADLINE
        while time.monotonic() < end:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited {process.returncode}: {self.log(name)}")
            readable, _, _ = select.select([self._ready_r], [], [], 0.2)
            if readable and name in os.read(self._ready_r, 4096).decode().split():
                return
        raise AssertionError(f"{name} not ready in {READY_DEADLINE}s: {self.log(name)}")

    def log(self, name: str) -> str:
        """The last part of a component's log."""
        return (self.log_dir / f"{name}.log").read_text(errors="replace")[-4000:]

    def kill(self, name: str) -> None:
        """SIGKILL a component (kill -9) and reap it."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE)

    def stop(self, name: str) -> int:
        """SIGTERM a component; return its exit code.

        One that does not stop within `stop_deadline` is SIGKILLed, and TimeoutExpired raised.
        """
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=self.stop_deadline)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every component still recorded; return every one's exit code.

        A component that hung on SIGTERM is in the result too, with the code of the SIGKILL
        that ended it (-9), so a check that every code is 0 fails for it.
        """
        codes: dict[str, int] = {}
        for name, process in list(self.processes.items()):
            try:
                codes[name] = self.stop(name)
            except subprocess.TimeoutExpired:
                codes[name] = process.returncode
        for fd in (self._ready_r, self._ready_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._ready_r = self._ready_w = -1
        return codes


@contextlib.contextmanager
def components(env: dict[str, str], log_dir: Path, names: tuple[str, ...]) -> Iterator[Components]:
    """Start `names` in order (each ready before the next); stop them all afterwards."""
    running = Components(env, log_dir)
    try:
        for name in names:
            running.start(name)
        yield running
    finally:
        running.stop_all()
