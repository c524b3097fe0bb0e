"""`hisho up` heals the local stack services it started, as the supervisor heals components.

Every `POLL_SECONDS` the recorded server processes are checked (which also reaps the ones
that exited: no zombie stays under `hisho up`). A service whose process is gone is started
again after the supervisor's growing `restart_delay`, on the ports it had. A service stopped
on purpose (`hisho stack down`) leaves no record and is left stopped.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TYPE_CHECKING

import structlog

from hisho.supervisor import restart_delay
from infra.stack import StackError

if TYPE_CHECKING:
    from infra.stack import Stack

log = structlog.get_logger("hisho.stack")

POLL_SECONDS = 1.0


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


class StackWatch:
    """Restarts the crashed services among `services` until `stop` is set."""

    def __init__(self, stack: Stack, services: list[str]) -> None:
        self.stack = stack
        self.services = services
        self.restarts = dict.fromkeys(services, 0)
        self._failed: set[str] = set()  # a failed start leaves no record: remember it here

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, and restart what crashed, until `stop` is set."""
        while not await _stopped_within(stop, POLL_SECONDS):
            crashed = await asyncio.to_thread(self.stack.crashed, self.services)
            for name in [name for name in self.services if name in {*crashed, *self._failed}]:
                if not await self._restart(name, stop):
                    return

    async def _restart(self, name: str, stop: asyncio.Event) -> bool:
        """Restart one service after its delay; False when a stop came first."""
        self.restarts[name] += 1
        delay = restart_delay(self.restarts[name])
        log.warning(
            "stack service exited; restarting",
            service=name,
            restarts=self.restarts[name],
            delay=delay,
        )
        if await _stopped_within(stop, delay):
            return False
        if name not in self._failed and not await asyncio.to_thread(self.stack.crashed, [name]):
            return True  # someone else restarted or stopped it meanwhile
        try:
            await asyncio.to_thread(self.stack.start_service, name)
        except StackError as exc:  # tried again at the next poll, after a longer delay
            log.error("stack service restart failed", service=name, error=str(exc))  # noqa: TRY400  (the message says it all)
            self._failed.add(name)
            return True
        self._failed.discard(name)
        pids = await asyncio.to_thread(self.stack.pids)
        log.info("stack service restarted", service=name, pid=pids.get(name))
        return True
