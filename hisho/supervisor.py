"""The process supervisor behind `hisho up`: one child process per component instance.

Each instance runs as `python -m hisho run <component>`; a component may run more than once
(the relay: a leader and its hot standbys, named `relay`, `relay-2`, ...). Children report
readiness through a pipe (`infra.readiness`: component name and pid), and every process,
first start or restart, is logged `component ready` when it reports. A child that dies while
we are running is restarted after `restart_delay`, which grows with each restart. What runs
is recorded in a status file (`hisho.run_status`, read by `hisho status`) at every change.
SIGTERM or SIGINT stops every child (SIGTERM, then SIGKILL after a grace period) and `run()`
returns 0 when all of them exited.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from hisho.run_status import ComponentStatus, UpStatus, supervisor_record, write_status
from infra.readiness import READY_FD_ENV

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

log = structlog.get_logger("hisho.supervisor")

GRACE_SECONDS = 10.0
MAX_RESTART_DELAY = 30.0


def restart_delay(restarts: int) -> float:
    """Seconds to wait before the n-th restart: 1, 2, 4, ... at most 30 (also the stack's)."""
    return float(min(MAX_RESTART_DELAY, 0.5 * 2**restarts))


def instances(components: list[str], copies: Mapping[str, int]) -> dict[str, str]:
    """Child names and their components: `relay`, `relay-2`, ... for a component run twice."""
    named: dict[str, str] = {}
    for component in components:
        for n in range(1, copies.get(component, 1) + 1):
            named[component if n == 1 else f"{component}-{n}"] = component
    return named


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Child:
    """One supervised process and what `hisho status` says about it."""

    name: str
    component: str
    process: asyncio.subprocess.Process | None = None
    started_at: datetime | None = None
    restarts: int = 0
    ready: bool = False  # the current process reported ready
    first_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def status(self) -> ComponentStatus:
        """The child as the status file records it."""
        running = self.process is not None and self.process.returncode is None
        return ComponentStatus(
            name=self.name,
            component=self.component,
            pid=self.process.pid if running and self.process is not None else None,
            up_since=self.started_at.isoformat() if running and self.started_at else None,
            restarts=self.restarts,
            ready=running and self.ready,
        )


class Supervisor:
    """Starts, watches and stops the component processes."""

    def __init__(
        self,
        children: Mapping[str, str] | list[str],
        *,
        env: dict[str, str] | None = None,
        status_file: Path | None = None,
    ) -> None:
        named = {name: name for name in children} if isinstance(children, list) else children
        self.children = {name: Child(name, component) for name, component in named.items()}
        self._env = env if env is not None else dict(os.environ)
        self._status_file = status_file
        self._record, self._started_at = supervisor_record(), _now()
        self.stopping = asyncio.Event()  # set by SIGTERM/SIGINT; others may watch it too
        self._ready_r, self._ready_w = os.pipe()

    async def run(self) -> int:
        """Run until asked to stop; returns the exit code for `hisho up`."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        loop.add_reader(self._ready_r, self._read_ready)
        watchers = [asyncio.create_task(self._watch(child)) for child in self.children.values()]
        try:
            if await self._wait_all_ready():
                log.info("ready", components=sorted(self.children))
            await self.stopping.wait()
            log.info("stopping", components=sorted(self.children))
        finally:
            self.stopping.set()
            await asyncio.gather(*watchers)
            loop.remove_reader(self._ready_r)
            os.close(self._ready_r)
            os.close(self._ready_w)
            if self._status_file is not None:
                self._status_file.unlink(missing_ok=True)
        return 0

    async def _wait_all_ready(self) -> bool:
        """Wait until every child reported ready (True) or a stop was asked for (False)."""
        all_ready = asyncio.ensure_future(
            asyncio.gather(*(child.first_ready.wait() for child in self.children.values()))
        )
        stop = asyncio.ensure_future(self.stopping.wait())
        waits: list[asyncio.Future[Any]] = [all_ready, stop]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)  # retrieve the cancellations
        return not self.stopping.is_set()

    def _read_ready(self) -> None:
        for line in os.read(self._ready_r, 4096).decode().splitlines():
            child = self._reporter(*line.split()) if line.strip() else None
            if child is None or child.ready or child.process is None:
                continue  # a process that was replaced meanwhile, or a repeated report
            child.ready = True
            child.first_ready.set()
            log.info(
                "component ready",
                component=child.name,
                pid=child.process.pid,
                restarts=child.restarts,
            )
            self._publish()

    def _reporter(self, component: str, pid: str = "", *_: str) -> Child | None:
        """The child whose current process sent a readiness line (by pid when it says one)."""
        for child in self.children.values():
            if child.process is None or child.component != component:
                continue
            if str(child.process.pid) == pid or (not pid and not child.ready):
                return child
        return None

    def _publish(self) -> None:
        if self._status_file is None:
            return
        components = [child.status() for child in self.children.values()]
        record, started = self._record, self._started_at.isoformat()
        status = UpStatus(record.pid, record.create_time, started, components)
        write_status(self._status_file, status)

    async def _watch(self, child: Child) -> None:
        while not self.stopping.is_set():
            child.process, child.started_at, child.ready = await self._spawn(child), _now(), False
            self._publish()
            exited = asyncio.create_task(child.process.wait())
            stop = asyncio.create_task(self.stopping.wait())
            await asyncio.wait([exited, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if self.stopping.is_set():
                await self._terminate(child.process)
                return
            child.restarts += 1
            delay = restart_delay(child.restarts)
            log.warning(
                "component exited; restarting",
                component=child.name,
                pid=child.process.pid,
                returncode=child.process.returncode,
                restarts=child.restarts,
                delay=delay,
            )
            self._publish()
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            except TimeoutError:
                continue

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        env = {**self._env, READY_FD_ENV: str(self._ready_w)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hisho",
            "run",
            child.component,
            env=env,
            pass_fds=(self._ready_w,),
        )
        log.info("component started", component=child.name, pid=process.pid)
        return process

    @staticmethod
    async def _terminate(process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=GRACE_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.info("component stopped", pid=process.pid, returncode=process.returncode)
