"""`hisho up` on a private stack, hurt from outside: kill -9 of a component, of the leading
relay and of RabbitMQ. It reports what happened truthfully (`component ready` again,
`hisho status`), heals what it started, loses no accepted command, and logs only JSON lines.

One `hisho up` serves the whole module (RabbitMQ boots in ~10 s); the tests run in file
order and each leaves the system running for the next.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika
import asyncpg
import httpx
import psutil
import pytest

from hisho.cli.up import components
from infra.topology import EVENTS_EXCHANGE
from tests.relay_harness import eventually, insert_probes, leader_pid, probes, wait_for_leader
from tests.up_support import PrivateUp, private_up

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from aio_pika.abc import AbstractQueue

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

TAKEOVER_BOUND = 5.0  # seconds; generous: the mechanism, not the speed (bench/relay_failover.py)
HEAL_DEADLINE = 120.0
ADMIN_KEY_EVENT = "local admin API key created; written once to a file"
API_KEY_SHAPE = re.compile(r"hisho_[0-9a-f]{16}_")
_STATUSES = "SELECT status, count(*) FROM command_status WHERE command_id = ANY($1) GROUP BY 1"
_EFFECTS = "SELECT causation_id, count(*) FROM outbox WHERE causation_id = ANY($1) GROUP BY 1"


@pytest.fixture(scope="module")
def up() -> Iterator[PrivateUp]:
    """One private `hisho up` (leader + standby relay) for every test of the module."""
    with private_up() as running:
        yield running


@pytest.fixture(scope="module")
def admin_headers(up: PrivateUp) -> dict[str, str]:
    """The admin key this `hisho up` wrote once to a file (the logs are JSON: never in them)."""
    event = next(e for e in up.events() if e.get("event") == ADMIN_KEY_EVENT)
    assert not API_KEY_SHAPE.search(json.dumps(up.events()))  # no key in any log line
    path = Path(str(event["path"]))
    assert path.stat().st_mode & 0o777 == 0o600
    return {"Authorization": f"Bearer {path.read_text().strip()}"}


def _is(event: str, **fields: object) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("event") == event and all(e.get(k) == v for k, v in fields.items())


def test_status_shows_every_component_with_its_pid_and_ready(up: PrivateUp) -> None:
    expected = sorted([*components(), "relay-2", "scheduler-2"])
    status = up.status()
    assert sorted(status) == expected
    children = {child.pid for child in psutil.Process(up.pid).children()}
    assert {item["pid"] for item in status.values()} <= children
    assert all(item["ready"] and item["restarts"] == 0 for item in status.values()), status
    assert all(item["up_since"] for item in status.values())
    table = up.cli("status")
    assert table.returncode == 0, table.stderr
    assert all(name in table.stdout for name in expected)


def test_a_killed_component_is_reported_ready_again_and_its_restart_counted(
    up: PrivateUp,
) -> None:
    before = up.status()["processor"]
    mark = up.mark()
    os.kill(before["pid"], signal.SIGKILL)
    up.wait_for(_is("component exited; restarting", component="processor"), timeout=30, after=mark)
    again = up.wait_for(
        _is("component ready", component="processor"), timeout=60, after=mark, what="ready"
    )
    assert again["pid"] != before["pid"]
    after = up.status()["processor"]
    assert after["restarts"] == before["restarts"] + 1 == 1
    assert (after["pid"], after["ready"]) == (again["pid"], True)


async def test_kill_9_of_the_leading_relay_the_standby_takes_over_within_the_bound(
    up: PrivateUp, record_property: Callable[[str, object], None]
) -> None:
    db = await asyncpg.connect(up.settings.database_dsn)
    broker = await aio_pika.connect(up.settings.amqp)
    try:
        queue = await (await broker.channel()).declare_queue(exclusive=True)
        key = f"relay_probe.t{uuid.uuid4().hex[:12]}"
        await queue.bind(EVENTS_EXCHANGE, key)
        relays = {item["pid"] for name, item in up.status().items() if name.startswith("relay")}
        leader = await leader_pid(db)
        assert leader is not None
        assert leader in relays, (leader, relays)
        mark = up.mark()
        os.kill(leader, signal.SIGKILL)
        killed_at = time.monotonic()
        await insert_probes(db, key, probes(1, 1))  # committed right after the kill
        new_leader = await wait_for_leader(db, relays - {leader})
        took_over = time.monotonic() - killed_at
        await _first_message(queue, within=TAKEOVER_BOUND * 2)
        flowing = time.monotonic() - killed_at
        record_property("relay_takeover_seconds", round(took_over, 3))
        record_property("relay_events_again_seconds", round(flowing, 3))
        assert new_leader != leader
        assert flowing < TAKEOVER_BOUND, flowing
        restarted = up.wait_for(_is("component ready", restarts=1), timeout=60, after=mark)
        assert str(restarted["component"]).startswith("relay")  # the killed one: the new standby
    finally:
        await broker.close()
        await db.close()


async def test_kill_9_of_rabbitmq_is_healed_and_the_work_in_flight_processed_once(
    up: PrivateUp, admin_headers: dict[str, str], record_property: Callable[[str, object], None]
) -> None:
    server = up.stack.pids()["rabbitmq"]
    assert psutil.Process(server).name() == "beam.smp"  # the recorded pid is the server's
    db = await asyncpg.connect(up.settings.database_dsn)
    async with httpx.AsyncClient(base_url=up.url, headers=admin_headers, timeout=10) as http:
        os.kill(up.status()["processor"]["pid"], signal.SIGKILL)  # commands now wait in queue
        accepted = [await _create_project(http) for _ in range(20)]
        mark = up.mark()
        os.kill(server, signal.SIGKILL)
        in_flight = len(accepted) - sum((await _statuses(db, accepted)).values())
        record_property("commands_in_flight_at_kill", in_flight)
        assert in_flight > 0, "the kill landed after every command was processed"
        up.wait_for(
            _is("stack service exited; restarting", service="rabbitmq"), timeout=30, after=mark
        )
        assert not _zombies(up.pid)
        up.wait_for(
            _is("stack service restarted", service="rabbitmq"), timeout=HEAL_DEADLINE, after=mark
        )
        assert up.stack.pids()["rabbitmq"] != server
        assert not _zombies(up.pid)
        accepted.append(await _eventually_accepted(http))

        async def all_processed() -> bool:
            return await _statuses(db, accepted) == {"processed": len(accepted)}

        await eventually(all_processed, timeout=HEAL_DEADLINE, what="every command processed")
    effects = await db.fetch(_EFFECTS, accepted)
    await db.close()
    assert sorted(row[0] for row in effects) == sorted(accepted)
    assert {row[1] for row in effects} == {1}  # one ProjectCreated each: processed once


def test_the_outage_left_only_json_lines_on_stderr(up: PrivateUp) -> None:
    lines = list(up.lines)
    assert lines
    not_json = [line for line in lines if not _is_json_object(line)]
    assert not not_json, not_json[:5]
    events = up.events()
    assert any(_is("stack service restarted", service="rabbitmq")(e) for e in events)
    libraries = {e["logger"] for e in events if not str(e.get("logger", "")).startswith("hisho")}
    assert libraries, "no library logged during the outage"


def test_sigterm_stops_everything_and_status_then_says_nothing_runs(up: PrivateUp) -> None:
    children = psutil.Process(up.pid).children()
    assert up.stop() == 0
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert up.stack.pids() == {}
    done = up.cli("status")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no `hisho up` is running" in done.stderr


async def _first_message(queue: AbstractQueue, *, within: float) -> None:
    deadline = time.monotonic() + within
    while await queue.get(no_ack=True, fail=False) is None:
        assert time.monotonic() < deadline, f"no event within {within}s"
        await asyncio.sleep(0.005)


async def _create_project(http: httpx.AsyncClient) -> uuid.UUID:
    policy = {"approvers": ["key:alice", "key:bob"], "required_approvals": 1}
    body = {"project_id": str(uuid.uuid4()), "name": "heal", "policy": policy}
    answer = await http.post("/v1/commands/CreateProject", json=body)
    assert answer.status_code == 202, answer.text
    return uuid.UUID(answer.json()["command_id"])


async def _eventually_accepted(http: httpx.AsyncClient) -> uuid.UUID:
    """POST until the ingress accepts again (the broker is back); the command id."""
    deadline = time.monotonic() + HEAL_DEADLINE
    while True:
        try:
            return await _create_project(http)
        except (AssertionError, httpx.TransportError):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


async def _statuses(db: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[str, int]:
    return {row[0]: row[1] for row in await db.fetch(_STATUSES, ids)}


def _zombies(pid: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(pid).children() if c.status() == psutil.STATUS_ZOMBIE]


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
