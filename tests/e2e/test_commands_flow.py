"""Issue 5's acceptance, end to end: HTTP in, events out, through real processes.

`hisho run relay|processor|ingress` run as subprocesses (as `hisho up` starts them); a client
posts commands over HTTP with a key made by `hisho keys create`, and a private tap queue on
`hisho.events` receives what they caused.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from infra.topology import EVENTS_EXCHANGE
from tests.components_support import component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli
from tests.processor_support import backlog_worked_off, events_caused_by, eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from aio_pika.abc import AbstractQueue, AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings
    from tests.components_support import Components


@pytest.fixture(scope="module")
def system(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """relay, processor and ingress as processes, and a key allowed to write and read."""
    port = free_port()
    env = component_env(settings, HISHO_INGRESS_PORT=str(port))
    hisho_cli(env, "migrate")
    key_id, token = cli_key(env, "commands:write", "state:read")
    with components(env, tmp_path_factory.mktemp("e2e"), ("relay", "processor", "ingress")) as run:
        asyncio.run(backlog_worked_off(settings))  # other tests' leftovers, before ours
        yield System(run, f"http://127.0.0.1:{port}", key_id, token)
        codes = run.stop_all()
    assert set(codes.values()) <= {0}, codes


class System:
    """The running processes and how to talk to them."""

    def __init__(self, run: Components, url: str, key_id: str, token: str) -> None:
        self.run = run
        self.url = url
        self.key_id = key_id
        self.headers = {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def events(amqp: AbstractRobustConnection) -> AsyncIterator[AbstractQueue]:
    """A private tap queue bound to every event on `hisho.events`."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(EVENTS_EXCHANGE, "#")
    yield queue
    await channel.close()


class Client:
    """Posts commands and waits for their outcome through the status URL."""

    def __init__(self, http: httpx.AsyncClient, system: System) -> None:
        self.http = http
        self.system = system

    async def post(self, command: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        """POST /v1/commands/<command>."""
        return await self.http.post(
            f"/v1/commands/{command}", json=body, headers={**self.system.headers, **headers}
        )

    async def processed(self, command: str, body: dict[str, Any], **headers: str) -> str:
        """Post a command, require 202 then `processed`; return the command id."""
        accepted = await self.post(command, body, **headers)
        assert accepted.status_code == 202, accepted.text
        status = await self.outcome(accepted.headers["location"])
        assert status["status"] == "processed", status
        return str(accepted.json()["command_id"])

    async def outcome(self, location: str) -> dict[str, Any]:
        """Poll the status URL until the command is processed or rejected."""

        async def final() -> dict[str, Any]:
            answer = await self.http.get(location, headers=self.system.headers)
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            assert body["status"] != "accepted"
            return body

        return await eventually(final)


@pytest.fixture
async def client(system: System) -> AsyncIterator[Client]:
    """An HTTP client of the ingress process."""
    async with httpx.AsyncClient(base_url=system.url, timeout=10) as http:
        yield Client(http, system)


async def tapped(queue: AbstractQueue, command_ids: set[str], count: int) -> list[dict[str, Any]]:
    """The envelopes (in arrival order) caused by `command_ids`, once `count` have arrived."""
    seen: list[dict[str, Any]] = []

    async def arrived() -> list[dict[str, Any]]:
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            envelope = json.loads(message.body)
            assert message.message_id == envelope["id"]
            if envelope["causation_id"] in command_ids:
                seen.append(envelope)
        assert len(seen) >= count, f"{len(seen)} of {count} events so far"
        return seen

    return await eventually(arrived, deadline=30.0)


async def test_approval_story_over_http_emits_the_events_with_their_envelopes(
    client: Client, events: AbstractQueue, system: System
) -> None:
    story = str(uuid.uuid4())
    trace_id = uuid.uuid4().hex
    trace = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    persona_ids = [str(uuid.uuid4()) for _ in range(2)]
    project_id, plan_id = str(uuid.uuid4()), str(uuid.uuid4())
    for persona_id in persona_ids:
        await client.processed("RegisterPersona", persona(persona_id))
    policy = {"approvers": ["alice", "bob", "carol"], "required_approvals": 2}
    created = await client.processed(
        "CreateProject", {"project_id": project_id, "name": "Launch", "policy": policy}
    )
    draft = {
        "plan_id": plan_id,
        "project_id": project_id,
        "title": "Q3",
        "steps": steps(persona_ids[0]),
    }
    plan_commands = [
        await client.processed(command, body, **{"X-Correlation-Id": story}, traceparent=trace)
        for command, body in (
            ("DraftPlan", draft),
            ("SubmitPlan", {"plan_id": plan_id}),
            ("ApprovePlan", {"plan_id": plan_id, "approver": "alice"}),
            ("ApprovePlan", {"plan_id": plan_id, "approver": "bob"}),
        )
    ]
    got = await tapped(events, {created, *plan_commands}, count=6)
    assert [e["type"] for e in got] == [
        "ProjectCreated",
        "PlanDrafted",
        "PlanSubmitted",
        "PlanApprovalRecorded",
        "PlanApprovalRecorded",
        "PlanApproved",
    ]
    causes = [created, *plan_commands[:3], plan_commands[3], plan_commands[3]]
    assert [e["causation_id"] for e in got] == causes
    assert got[0]["correlation_id"] == created  # no X-Correlation-Id: the command's own id
    assert {e["correlation_id"] for e in got[1:]} == {story}
    assert {json.dumps(e["actor"], sort_keys=True) for e in got} == {
        json.dumps({"id": system.key_id, "kind": "api_key"}, sort_keys=True)
    }
    positions = [e["position"] for e in got]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert [e["aggregate_version"] for e in got[1:]] == [1, 2, 3, 4, 5]
    assert {e["aggregate_id"] for e in got[1:]} == {plan_id}
    assert {e["traceparent"].split("-")[1] for e in got[1:]} == {trace_id}  # one trace
    last = await client.http.get(f"/v1/commands/{plan_commands[3]}", headers=system.headers)
    assert last.json()["result_event_ids"] == [got[4]["id"], got[5]["id"]]


def steps(persona_id: str) -> list[dict[str, str]]:
    ai = {"kind": "ai", "title": "Draft", "persona_id": persona_id, "input": "Write"}
    human = {"kind": "human", "title": "Check", "assignee": "alice", "instructions": "Read"}
    return [{**ai, "step_id": str(uuid.uuid4())}, {**human, "step_id": str(uuid.uuid4())}]


def persona(persona_id: str) -> dict[str, Any]:
    return {
        "persona_id": persona_id,
        "name": "Aiko",
        "role": "writer",
        "provider": "fake",
        "model": "fake-1",
        "system_prompt": "Write well.",
    }


async def test_one_idempotency_key_gives_one_set_of_events_and_a_changed_body_409(
    client: Client, events: AbstractQueue, engine: AsyncEngine
) -> None:
    key = {"Idempotency-Key": f"e2e-{uuid.uuid4()}"}
    body = {
        "project_id": str(uuid.uuid4()),
        "name": "Once",
        "policy": {"approvers": ["alice"], "required_approvals": 1},
    }
    first, second = await asyncio.gather(
        client.post("CreateProject", body, **key), client.post("CreateProject", body, **key)
    )
    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    command_id = first.json()["command_id"]
    assert second.json()["command_id"] == command_id
    assert (await client.outcome(first.headers["location"]))["status"] == "processed"
    [event] = await tapped(events, {command_id}, count=1)
    assert event["type"] == "ProjectCreated"
    assert len(await events_caused_by(engine, uuid.UUID(command_id))) == 1
    conflicting = await client.post("CreateProject", {**body, "name": "Twice"}, **key)
    assert conflicting.status_code == 409, conflicting.text
    assert conflicting.headers["content-type"].startswith("application/problem+json")
