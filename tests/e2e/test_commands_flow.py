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

from events import Actor
from events.notification import NotificationChannel, SendNotification
from infra.db.people import SqlPeople
from infra.db.pg_uow import PgUnitOfWork
from infra.message_context import MessageContext
from infra.people import NewPerson
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
    people = {name: cli_key(env, "commands:write", "state:read") for name in VOTERS}
    people["admin"] = cli_key(env, "admin")
    with components(env, tmp_path_factory.mktemp("e2e"), ("relay", "processor", "ingress")) as run:
        asyncio.run(backlog_worked_off(settings))  # other tests' leftovers, before ours
        yield System(run, f"http://127.0.0.1:{port}", key_id, token, people)
        codes = run.stop_all()
    assert set(codes.values()) <= {0}, codes


VOTERS = ("alice", "bob", "carol", "mallory")  # the first three approve; mallory does not


class System:
    """The running processes and how to talk to them (and the keys of a few people)."""

    def __init__(
        self,
        run: Components,
        url: str,
        key_id: str,
        token: str,
        people: dict[str, tuple[str, str]],
    ) -> None:
        self.run = run
        self.url = url
        self.key_id = key_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.people = people  # name -> (key id, token)

    def principal(self, name: str) -> str:
        """The principal id of a person's key."""
        return f"key:{self.people[name][0]}"

    def auth(self, name: str) -> dict[str, str]:
        """The Authorization header of a person's key."""
        return {"Authorization": f"Bearer {self.people[name][1]}"}


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

    async def post(
        self, command: str, body: dict[str, Any], *, by: str | None = None, **headers: str
    ) -> httpx.Response:
        """POST /v1/commands/<command> with the system's key, or person `by`'s."""
        auth = self.system.headers if by is None else self.system.auth(by)
        return await self.http.post(
            f"/v1/commands/{command}", json=body, headers={**auth, **headers}
        )

    async def processed(
        self, command: str, body: dict[str, Any], *, by: str | None = None, **headers: str
    ) -> str:
        """Post a command, require 202 then `processed`; return the command id."""
        accepted = await self.post(command, body, by=by, **headers)
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
    approvers = [system.principal(name) for name in ("alice", "bob", "carol")]
    policy = {"approvers": approvers, "required_approvals": 2}
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
        await client.processed(
            command, body, by=by, **{"X-Correlation-Id": story}, traceparent=trace
        )
        for command, body, by in (
            ("DraftPlan", draft, None),
            ("SubmitPlan", {"plan_id": plan_id}, None),
            ("ApprovePlan", {"plan_id": plan_id}, "alice"),
            ("ApprovePlan", {"plan_id": plan_id}, "bob"),
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
    senders = [system.key_id] * 3 + [system.people["alice"][0]] + [system.people["bob"][0]] * 2
    assert [e["actor"] for e in got] == [{"id": key, "kind": "api_key"} for key in senders]
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
    human = {"kind": "human", "title": "Check", "assignee": "key:alice", "instructions": "Read"}
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
        "policy": {"approvers": ["key:alice"], "required_approvals": 1},
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


async def test_votes_are_cast_by_their_approvers_and_an_admin_on_behalf_is_recorded(
    client: Client, events: AbstractQueue, system: System
) -> None:
    """Issue 15's story: three approvers of a 2-of-3 policy, a fourth key, and an admin."""
    alice, bob, carol = (system.principal(name) for name in ("alice", "bob", "carol"))
    project_id = str(uuid.uuid4())
    policy = {"approvers": [alice, bob, carol], "required_approvals": 2}
    await client.processed(
        "CreateProject", {"project_id": project_id, "name": "Votes", "policy": policy}
    )

    async def submitted() -> str:
        plan_id = str(uuid.uuid4())
        human = {"kind": "human", "title": "Sign", "assignee": alice, "instructions": "Sign"}
        draft = {"plan_id": plan_id, "project_id": project_id, "title": "Budget"}
        await client.processed(
            "DraftPlan", {**draft, "steps": [{**human, "step_id": str(uuid.uuid4())}]}
        )
        await client.processed("SubmitPlan", {"plan_id": plan_id})
        return plan_id

    async def refused(body: dict[str, Any], by: str) -> dict[str, Any]:
        accepted = await client.post("ApprovePlan", body, by=by)
        assert accepted.status_code == 202, accepted.text
        status = await client.outcome(accepted.headers["location"])
        assert status["status"] == "rejected", status
        assert status["problem"]["status"] == 403
        return dict(status["problem"])

    plan_id = await submitted()
    as_bob = await refused({"plan_id": plan_id, "on_behalf_of": bob}, by="alice")
    assert as_bob["code"] == "plan-vote-on-behalf-forbidden"
    outsider = await refused({"plan_id": plan_id}, by="mallory")
    assert outsider["code"] == "plan-not-an-approver"
    votes = [
        await client.processed("ApprovePlan", {"plan_id": plan_id}, by=name)
        for name in ("alice", "bob")
    ]
    *recorded, approved = await _caused(events, set(votes), PLAN_VOTES, count=3)
    assert [e["type"] for e in [*recorded, approved]] == [
        *["PlanApprovalRecorded"] * 2,
        "PlanApproved",
    ]
    assert [e["data"]["approver"] for e in recorded] == [alice, bob]  # no vote from the refused
    assert approved["data"]["approvers"] == [alice, bob]
    assert approved["data"]["submitted_by"] == f"key:{system.key_id}"
    assert approved["data"]["project_id"] == project_id
    assert approved["data"]["title"] == "Budget"

    plan_id = await submitted()
    on_behalf = await client.processed(
        "ApprovePlan", {"plan_id": plan_id, "on_behalf_of": carol}, by="admin"
    )
    (vote,) = await _caused(events, {on_behalf}, PLAN_VOTES, count=1)
    admin = system.principal("admin")
    assert (vote["data"]["approver"], vote["data"]["cast_by"]) == (carol, admin)
    assert vote["actor"] == {"id": system.people["admin"][0], "kind": "api_key", "admin": True}


PLAN_VOTES = frozenset({"PlanApprovalRecorded", "PlanApproved"})


async def _caused(
    queue: AbstractQueue, command_ids: set[str], types: frozenset[str], *, count: int
) -> list[dict[str, Any]]:
    """The events of `types` caused by `command_ids`, in order, once `count` arrived."""
    wanted: list[dict[str, Any]] = []

    async def arrived() -> list[dict[str, Any]]:
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            envelope = json.loads(message.body)
            if envelope["causation_id"] in command_ids and envelope["type"] in types:
                wanted.append(envelope)
        assert len(wanted) >= count, f"{len(wanted)} of {count} events so far"
        return wanted

    return await eventually(arrived, deadline=30.0)


async def test_a_system_only_command_is_refused_over_http_and_accepted_through_the_outbox(
    client: Client, events: AbstractQueue, engine: AsyncEngine
) -> None:
    """SendNotification: 403 from a caller; from hisho's outbox, delivered or dropped."""
    recipient = f"key:{uuid.uuid4().hex[:16]}"
    people, hisho = SqlPeople(engine), MessageContext.start(Actor.system("e2e"))

    def notify() -> SendNotification:
        return SendNotification(
            notification_id=uuid.uuid4(),
            channel=NotificationChannel.IN_APP,
            recipient=recipient,
            subject="Plan approved",
            body="Your plan was approved.",
        )

    async def through_the_outbox(command: SendNotification) -> dict[str, Any]:
        uow = PgUnitOfWork(engine)
        async with uow:
            command_id = await uow.outbox.add_command(command, context=hisho)
            await uow.commit()
        (event,) = await tapped(events, {str(command_id)}, count=1)
        return event

    refused = await client.post("SendNotification", notify().model_dump(mode="json"))
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/command-system-only")
    await people.register(NewPerson(principal_id=recipient, display_name="Ana"), context=hisho)
    requested = await through_the_outbox(notify())
    assert (requested["type"], requested["data"]["recipient"]) == (
        "NotificationRequested",
        recipient,
    )
    await people.erase(recipient, context=hisho)  # the row is gone: nobody to send to
    dropped = await through_the_outbox(notify())
    assert dropped["type"] == "NotificationDropped"
    assert dropped["data"]["reason"] == f"{recipient} is not in the people directory"
