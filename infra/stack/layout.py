"""Files of one stack directory: pid records, logs, data, `ports.json`, the lock."""

from __future__ import annotations

import contextlib
import fcntl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.stack.process import PidFile

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@dataclass(frozen=True)
class StackLayout:
    """Where a stack keeps its state: everything lives under `root`."""

    root: Path

    @property
    def ports_file(self) -> Path:
        """Ports actually in use, read by `Settings.stack_ports`."""
        return self.root / "ports.json"

    @property
    def exec_file(self) -> Path:
        """Leases of running `hisho stack exec` invocations."""
        return self.root / "run" / "exec.json"

    def pid_file(self, process: str) -> PidFile:
        """The pid record of one process (`rabbitmq`, `epmd`, `postgres`, `redis`)."""
        return PidFile(self.root / "run" / f"{process}.pid")

    def log(self, process: str) -> Path:
        """The output of one process."""
        return self.root / "logs" / f"{process}.log"

    def data(self, service: str) -> Path:
        """The data directory of one service."""
        return self.root / service

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the stack's lock: one launcher at a time changes this stack."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
