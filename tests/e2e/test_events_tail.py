"""`hisho events tail` as a process on the test broker: what it prints, how it stops, and
how it refuses bad input (one line on stderr, a non-zero exit, nothing connected)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from typing import TYPE_CHECKING

import aio_pika
import pytest

from infra.topology import EVENTS_EXCHANGE
from tests.components_support import component_env
from tests.ingress_support import TcpProxy

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from infra.settings import Settings

DEADLINE = 60.0


class TailProcess:
    """A running `hisho events tail`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.told = b""

    @classmethod
    async def start(cls, env: dict[str, str], *args: str) -> TailProcess:
        """Start it; return once it has said on stderr that its queue is bound."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hisho", "events", "tail", *args,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        tail = cls(process)
        assert process.stderr is not None
        told = await asyncio.wait_for(process.stderr.readline(), DEADLINE)
        assert b"watching hisho.events" in told, told + await tail.rest_of_stderr()
        return tail

    async def rest_of_stderr(self) -> bytes:
        """What it still writes on stderr until it ends (bounded)."""
        assert self.process.stderr is not None
        return await asyncio.wait_for(self.process.stderr.read(), DEADLINE)

    async def finished(self) -> tuple[int, list[str]]:
        """Its exit code and its stdout lines, once it ended by itself (bounded).

        What it wrote on stderr after its first line is kept in `told`.
        """
        out, self.told = await asyncio.wait_for(self.process.communicate(), DEADLINE)
        assert self.process.returncode is not None
        return self.process.returncode, out.decode().splitlines()


async def publish(amqp: AbstractRobustConnection, routing_key: str, body: bytes) -> None:
    """Publish one message on `hisho.events` with a confirm, as the relay does."""
    async with amqp.channel(publisher_confirms=True) as channel:
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        await exchange.publish(aio_pika.Message(body), routing_key=routing_key)


def an_event(kind: str, aggregate_type: str, position: int) -> tuple[str, bytes]:
    """An envelope as the relay publishes it; its id and its body."""
    event_id, aggregate_id = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "id": event_id,
        "type": kind,
        "version": 1,
        "position": position,
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "aggregate_version": 1,
        "data": {f"{aggregate_type}_id": aggregate_id, "note": "tail"},
    }
    return event_id, json.dumps(body).encode()


async def test_tail_prints_the_events_its_pattern_matches_and_stops_after_count(
    settings: Settings, amqp: AbstractRobustConnection
) -> None:
    tail = await TailProcess.start(component_env(settings), "--pattern", "plan.*", "--count", "2")
    project_id, project = an_event("ProjectCreated", "project", 7)
    plan_ids = []
    await publish(amqp, "project.created", project)
    for position in (8, 9, 10):
        plan_id, plan = an_event("PlanSubmitted", "plan", position)
        plan_ids.append(plan_id)
        await publish(amqp, "plan.submitted", plan)
    code, lines = await tail.finished()
    assert code == 0
    assert len(lines) == 2, lines
    for line, position, plan_id in zip(lines, (8, 9), plan_ids, strict=False):
        assert line.startswith(f"{position:>6}  PlanSubmitted  plan "), line
        assert f"id {plan_id}  " in line
        assert line.endswith('{"note":"tail"}'), line
    assert project_id not in "".join(lines)


async def test_tail_json_prints_each_envelope_as_one_json_line(
    settings: Settings, amqp: AbstractRobustConnection
) -> None:
    tail = await TailProcess.start(component_env(settings), "--json", "--count", "1")
    _, body = an_event("PlanSubmitted", "plan", 11)
    await publish(amqp, "plan.submitted", body)
    code, lines = await tail.finished()
    assert code == 0
    assert [json.loads(line) for line in lines] == [json.loads(body)]


@pytest.mark.usefixtures("amqp")  # declares the topology
async def test_tail_ends_with_0_on_ctrl_c_sigterm_and_its_timeout(
    settings: Settings,
) -> None:
    env = component_env(settings)
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, and what a supervisor sends
        tail = await TailProcess.start(env)
        tail.process.send_signal(signum)
        assert await tail.finished() == (0, []), signum
    timed = await TailProcess.start(env, "--pattern", "task.#", "--timeout", "0.5")
    assert (await timed.finished())[0] == 0


@pytest.mark.usefixtures("amqp")  # declares the topology
async def test_tail_exits_1_when_the_timeout_comes_before_count(
    settings: Settings,
) -> None:
    tail = await TailProcess.start(
        component_env(settings),
        "--pattern",
        "persona.retired",
        "--count",
        "1000",
        "--timeout",
        "0.5",
    )
    assert await tail.finished() == (1, [])


@pytest.mark.usefixtures("amqp")  # declares the topology
async def test_a_lost_broker_connection_is_one_line_and_exit_1(
    settings: Settings,
) -> None:
    proxy = TcpProxy.to_url(settings.amqp)
    url = await proxy.start_url()
    try:
        tail = await TailProcess.start(component_env(settings, HISHO_AMQP_URL=url))
        proxy.cut()
        code, lines = await tail.finished()
    finally:
        await proxy.close()
    assert (code, lines) == (1, [])
    told = tail.told
    assert told.startswith(b"hisho events tail: lost the connection to RabbitMQ: "), told
    assert told.count(b"\n") == 1, told


async def refused(env: dict[str, str], *args: str) -> tuple[int, bytes, bytes]:
    """Run a tail that must not start: its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hisho", "events", "tail", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE)
    assert process.returncode is not None
    return process.returncode, out, err


async def test_a_bad_pattern_is_one_line_on_stderr_and_exit_2(settings: Settings) -> None:
    env = component_env(settings, HISHO_AMQP_URL="amqp://guest:guest@127.0.0.1:1/")
    for pattern, says in (("plan..x", b"bad pattern 'plan..x'"), ("plans.*", b"matches no event")):
        code, out, err = await refused(env, "--pattern", pattern)
        assert (code, out) == (2, b"")
        assert err.count(b"\n") == 1, err
        assert says in err  # and decided before any connection: the broker URL is closed


async def test_an_unreachable_broker_is_one_line_without_the_password_and_exit_1(
    settings: Settings,
) -> None:
    url = "amqp://someone:s3cret-word@127.0.0.1:1/"
    code, out, err = await refused(component_env(settings, HISHO_AMQP_URL=url))
    assert (code, out) == (1, b"")
    assert err.startswith(b"hisho events tail: cannot reach RabbitMQ at 127.0.0.1:1: "), err
    assert err.count(b"\n") == 1, err
    assert b"s3cret" not in err
