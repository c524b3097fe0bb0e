"""Commands for one aggregate are decided in the order they were accepted, also while a
backlog is worked off after kill -9 of a processor and its restart (issue 14, "Order").

`STORIES` client stories (tests/stories.py: create a project, then draft, submit as soon as
the draft's 202 arrives, two approvals at once as soon as the submit's 202 arrives) run over
HTTP against `hisho run ingress` and two `hisho run processor` processes. After
`FREEZE_AFTER` accepted commands both processors are frozen (SIGSTOP) while the stories go
on posting, so a backlog builds up with work handed to both; the first processor is then
killed (SIGKILL, by its recorded pid) while frozen, the second let go on, and the first
started again while the second works the backlog off.

Then every accepted command's status is polled until decided. The client must see no
command decided before one it had sent earlier (no `plan-not-found` / `plan-not-submitted`),
every command decided and processed, every plan approved; and the kill must have met a
backlog (commands accepted before it and decided after it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.components_support import Components, component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli
from tests.stories import (
    COMMANDS_PER_STORY,
    UNDECIDED,
    HttpxTransport,
    Stories,
    order_violations,
    voters_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from infra.settings import Settings

STORIES = 150
CONCURRENCY = 30  # stories under way at once
FREEZE_AFTER = 200  # accepted commands before the processors are frozen
FREEZE_FOR = 1.5  # seconds frozen, unless BACKLOG more commands are accepted first
BACKLOG = 120
DEADLINE = 100.0  # the whole run, stories and outcomes

pytestmark = pytest.mark.timeout(180)


class Chaos:
    """Freezes both processors, kills the first while frozen, lets the second go, restarts."""

    def __init__(self, stories: Stories, first: Components, second: Components) -> None:
        self.stories = stories
        self.first = first
        self.second = second
        self.frozen: list[int] = []
        self.killed_at = 0.0
        self.backlog_at_kill = 0

    async def accepted(self, count: int, timeout: float) -> None:
        """Wait until `count` commands were accepted, or `timeout` s passed."""
        end = time.monotonic() + timeout
        while len(self.stories.accepted) < count and time.monotonic() < end:
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        await self.accepted(FREEZE_AFTER, DEADLINE)
        assert len(self.stories.accepted) >= FREEZE_AFTER, "the stories stalled before the kill"
        for run in (self.first, self.second):
            pid = run.processes["processor"].pid
            os.kill(pid, signal.SIGSTOP)
            self.frozen.append(pid)
        frozen_with = len(self.stories.accepted)
        await self.accepted(frozen_with + BACKLOG, FREEZE_FOR)
        self.killed_at = time.time()
        self.backlog_at_kill = len(self.stories.accepted) - frozen_with
        await asyncio.to_thread(self.first.kill, "processor")
        self.frozen.remove(self.first.processes["processor"].pid)
        self.thaw()
        await asyncio.to_thread(self.first.start, "processor")

    def thaw(self) -> None:
        """SIGCONT whatever is still frozen (so it can be stopped)."""
        for pid in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen.clear()


async def test_a_client_never_sees_its_commands_decided_out_of_order_across_a_kill(
    settings: Settings, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    port = free_port()
    env = component_env(
        settings, HISHO_INGRESS_PORT=str(port), HISHO_INGRESS_RATE_LIMIT="100000000"
    )
    hisho_cli(env, "migrate")
    hisho_cli(env, "topology")  # every consumer's queues, before any consumer runs
    _, token = cli_key(env, "commands:write", "state:read")
    voters = voters_of(cli_key(env, "commands:write") for _ in range(2))  # each votes itself
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with components(env, tmp_path / "first", ("processor", "ingress")) as first:
        second = Components(env, tmp_path / "second")
        try:
            second.start("processor")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                stories = Stories(HttpxTransport(http), token, voters)
                chaos = Chaos(stories, first, second)
                try:
                    async with asyncio.timeout(DEADLINE):
                        kill = asyncio.create_task(chaos.run())
                        await stories.run(STORIES, concurrency=CONCURRENCY)
                        await kill
                        outcomes = await stories.outcomes()
                        plans = await stories.plans_approved()
                finally:
                    chaos.thaw()
        finally:
            second.stop_all()
    accepted = stories.accepted.values()
    decided_after_kill = sum(
        1
        for a in accepted
        if a.answered_at < chaos.killed_at < stories.decided_at.get(a.command_id, 0.0)
    )
    record_property("outcomes", dict(outcomes))
    record_property("accepted_while_frozen", chaos.backlog_at_kill)
    record_property("accepted_before_and_decided_after_the_kill", decided_after_kill)
    assert stories.errors == []
    assert len(stories.accepted) == STORIES * COMMANDS_PER_STORY
    assert outcomes[UNDECIDED] == 0, f"commands never decided: {dict(outcomes)}"
    assert order_violations(outcomes) == {}, f"decided out of order: {dict(outcomes)}"
    assert outcomes == {"processed": STORIES * COMMANDS_PER_STORY}
    assert plans == {"approved": STORIES}
    assert decided_after_kill > 0, "the kill met no backlog"
