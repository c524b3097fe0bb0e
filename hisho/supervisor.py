"""The process supervisor behind `hisho up`: one child process per component.

Each component runs as `python -m hisho run <name>`. Children report readiness through a
pipe (`infra.readiness`); a child that dies while we are running is restarted with a growing
delay. SIGTERM or SIGINT stops every child (SIGTERM, then SIGKILL after a grace period) and
`run()` returns 0 when all of them exited.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import structlog

from infra.readiness import READY_FD_ENV

log = structlog.get_logger("hisho.supervisor")

GRACE_SECONDS = 10.0
MAX_RESTART_DELAY = 30.0


@dataclass
class Child:
    """One supervised component process."""

    name: str
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Supervisor:
    """Starts, watches and stops the component processes."""

    def __init__(self, components: list[str], *, env: dict[str, str] | None = None) -> None:
        self.children = {name: Child(name) for name in components}
        self._env = env if env is not None else dict(os.environ)
        self._stopping = asyncio.Event()
        self._ready_r, self._ready_w = os.pipe()

    async def run(self) -> int:
        """Run until asked to stop; returns the exit code for `hisho up`."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        loop.add_reader(self._ready_r, self._read_ready)
        watchers = [asyncio.create_task(self._watch(child)) for child in self.children.values()]
        try:
            if await self._wait_all_ready():
                log.info("ready", components=sorted(self.children))
            await self._stopping.wait()
            log.info("stopping", components=sorted(self.children))
        finally:
            self._stopping.set()
            await asyncio.gather(*watchers)
            loop.remove_reader(self._ready_r)
            os.close(self._ready_r)
            os.close(self._ready_w)
        return 0

    async def _wait_all_ready(self) -> bool:
        """Wait until every child reported ready (True) or a stop was asked for (False)."""
        all_ready = asyncio.ensure_future(
            asyncio.gather(*(child.ready.wait() for child in self.children.values()))
        )
        stop = asyncio.ensure_future(self._stopping.wait())
        waits: list[asyncio.Future[Any]] = [all_ready, stop]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)  # retrieve the cancellations
        return not self._stopping.is_set()

    def _read_ready(self) -> None:
        for line in os.read(self._ready_r, 4096).decode().split():
            child = self.children.get(line)
            if child is not None and not child.ready.is_set():
                log.info("component ready", component=line)
                child.ready.set()

    async def _watch(self, child: Child) -> None:
        while not self._stopping.is_set():
            child.process = await self._spawn(child.name)
            exited = asyncio.create_task(child.process.wait())
            stop = asyncio.create_task(self._stopping.wait())
            await asyncio.wait([exited, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if self._stopping.is_set():
                await self._terminate(child.process)
                return
            child.restarts += 1
            delay = min(MAX_RESTART_DELAY, 0.5 * 2**child.restarts)
            log.warning(
                "component exited; restarting",
                component=child.name,
                returncode=child.process.returncode,
                delay=delay,
            )
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            except TimeoutError:
                continue

    async def _spawn(self, name: str) -> asyncio.subprocess.Process:
        env = {**self._env, READY_FD_ENV: str(self._ready_w)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hisho", "run", name, env=env, pass_fds=(self._ready_w,)
        )
        log.info("component started", component=name, pid=process.pid)
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
