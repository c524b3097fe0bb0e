"""Issue 16 end to end: the platform moves plans and workflows on by itself, real processes.

relay, processor, scheduler, approval, workflow and ingress run as `hisho run` processes on
the test's database and vhost. People act over HTTP with their own keys; everything else
(asking approvers, reminders, the deadline, auto-approval, starting the workflow, queueing
tasks as their dependencies complete, review, time limits) is hisho's. The outbox is read
to see what happened, and how many times.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import text

from tests.components_support import component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli
from tests.processor_support import backlog_worked_off, eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

PROCESSES = ("relay", "processor", "scheduler", "approval", "workflow", "ingress")
STORY_DEADLINE = 40.0  # seconds any one expectation may take


class People:
    """The running system's URL and the keys of alice (owner, approver, assignee), bob, carol."""

    def __init__(self, url: str, keys: dict[str, tuple[str, str]]) -> None:
        self.url = url
        self.keys = keys

    def principal(self, name: str) -> str:
        """The principal id of a person's key."""
        return f"key:{self.keys[name][0]}"


@pytest.fixture(scope="module")
def people(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[People]:
    """Every process of the platform, and three people's keys."""
    port = free_port()
    env = component_env(
        settings, HISHO_INGRESS_PORT=str(port), HISHO_SCHEDULER_POLL_INTERVAL="0.05"
    )
    hisho_cli(env, "migrate")
    hisho_cli(env, "topology")
    keys = {
        name: cli_key(env, "commands:write", "state:read") for name in ("alice", "bob", "carol")
    }
    with components(env, tmp_path_factory.mktemp("platform"), PROCESSES) as run:
        asyncio.run(backlog_worked_off(settings))
        yield People(f"http://127.0.0.1:{port}", keys)
        codes = run.stop_all()
    assert set(codes.values()) <= {0}, codes


@pytest.fixture
async def client(people: People) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(base_url=people.url, timeout=10) as http:
        yield Client(http, people)


class Client:
    """Posts commands as a person and waits until they are processed."""

    def __init__(self, http: httpx.AsyncClient, people: People) -> None:
        self.http = http
        self.people = people

    async def processed(self, command: str, body: dict[str, Any], *, by: str = "alice") -> None:
        """POST the command with `by`'s key; require 202, then `processed`."""
        auth = {"Authorization": f"Bearer {self.people.keys[by][1]}"}
        accepted = await self.http.post(f"/v1/commands/{command}", json=body, headers=auth)
        assert accepted.status_code == 202, accepted.text

        async def done() -> None:
            status = (await self.http.get(accepted.headers["location"], headers=auth)).json()
            assert status["status"] == "processed", status

        await eventually(done, deadline=STORY_DEADLINE)


async def events_of(engine: AsyncEngine, aggregate_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The published events of these aggregates, in log order."""
    query = text(
        "SELECT type, aggregate_id, data FROM outbox WHERE kind = 'event'"
        " AND aggregate_id = ANY(:ids) AND position IS NOT NULL ORDER BY position"
    )
    async with engine.connect() as connection:
        rows = await connection.execute(query, {"ids": aggregate_ids})
        return [dict(row._mapping) for row in rows]


async def until(engine: AsyncEngine, ids: list[uuid.UUID], check: Any) -> list[dict[str, Any]]:
    """The events of `ids` once `check(types)` holds."""

    async def holds() -> list[dict[str, Any]]:
        found = await events_of(engine, ids)
        assert check([event["type"] for event in found]), [event["type"] for event in found]
        return found

    return await eventually(holds, deadline=STORY_DEADLINE)


async def project(client: Client, people: People, **policy: Any) -> str:
    """A project of alice's with a 2-of-3 policy (and `policy`'s changes)."""
    project_id = str(uuid.uuid4())
    approvers = [people.principal(name) for name in ("alice", "bob", "carol")]
    rules = {"approvers": approvers, "required_approvals": 2, **policy}
    body = {"project_id": project_id, "name": "Platform", "policy": rules}
    await client.processed("CreateProject", body)
    return project_id


async def submitted(client: Client, project_id: str, steps: list[dict[str, Any]]) -> uuid.UUID:
    """A plan of `steps` (unique titles per plan), drafted and submitted by alice."""
    plan_id = uuid.uuid4()
    suffix = plan_id.hex[:6]
    for body in steps:  # step ids unique per plan: the titles carry the plan's suffix
        body["step_id"] = str(uuid.uuid5(plan_id, body["title"]))
        body["depends_on"] = [str(uuid.uuid5(plan_id, t)) for t in body.pop("after_titles", [])]
        body["title"] = f"{body['title']} {suffix}"
    draft = {"plan_id": str(plan_id), "project_id": project_id, "title": "Run", "steps": steps}
    await client.processed("DraftPlan", draft)
    await client.processed("SubmitPlan", {"plan_id": str(plan_id)})
    return plan_id


def human(
    title: str, assignee: str, *, after: tuple[str, ...] = (), **limits: float
) -> dict[str, Any]:
    """A human step named by `title` within its plan; `after` names the steps it waits for."""
    body: dict[str, Any] = {
        "kind": "human",
        "title": title,
        "assignee": assignee,
        "instructions": f"do {title}",
        "after_titles": list(after),
    }
    return body | {name: f"PT{seconds}S" for name, seconds in limits.items()}


async def test_an_undecided_plan_is_reminded_then_expired_exactly_once(
    client: Client, people: People, engine: AsyncEngine
) -> None:
    project_id = await project(
        client, people, approval_deadline="PT3S", remind_before=["PT2S", "PT1S"]
    )
    plan_id = await submitted(client, project_id, [human("Sign", people.principal("alice"))])
    found = await until(engine, [plan_id], lambda types: "PlanExpired" in types)
    types = [event["type"] for event in found]
    assert types.count("ApprovalRequested") == 3
    assert types.count("ApprovalReminderDue") == 2
    assert types.index("ApprovalReminderDue") < types.index("PlanExpired")
    await asyncio.sleep(1.0)  # nothing more comes: the deadline fired once
    later = [event["type"] for event in await events_of(engine, [plan_id])]
    assert later.count("PlanExpired") == 1
    assert "PlanApproved" not in later


async def test_an_auto_approved_plan_runs_dependencies_review_revision_to_completion(
    client: Client, people: People, engine: AsyncEngine
) -> None:
    alice = people.principal("alice")
    project_id = await project(client, people, auto_approve_max_steps=5)
    steps = [human("A", alice), human("B", alice), human("C", alice, after=("A", "B"))]
    plan_id = await submitted(client, project_id, steps)
    found = await until(engine, [plan_id], lambda types: "PlanWorkflowStarted" in types)
    approved = next(event for event in found if event["type"] == "PlanApproved")
    assert approved["data"]["auto"] is True
    assert "auto_approve_max_steps" in approved["data"]["rule"]
    workflow_id = uuid.UUID(
        next(e for e in found if e["type"] == "PlanWorkflowStarted")["data"]["workflow_id"]
    )
    started = await until(engine, [workflow_id], lambda types: "WorkflowStarted" in types)
    task_ids = [uuid.UUID(t) for t in started[0]["data"]["task_ids"]]
    a, b, c = task_ids
    queued = await until(engine, task_ids, lambda types: types.count("TaskQueued") >= 2)
    assert {event["aggregate_id"] for event in queued if event["type"] == "TaskQueued"} == {a, b}
    for task in (a, b):  # A and B were queued together; C waits for both
        await client.processed("StartTask", {"task_id": str(task), "worker": alice})
        await client.processed("CompleteTask", {"task_id": str(task), "output": "done"})
        if task == a:
            await asyncio.sleep(0.5)
            now = await events_of(engine, [c])
            assert "TaskQueued" not in [event["type"] for event in now]
    await until(engine, [c], lambda types: "TaskQueued" in types)
    await client.processed("StartTask", {"task_id": str(c), "worker": alice})
    await client.processed("CompleteTask", {"task_id": str(c), "output": "done"})
    await until(engine, [workflow_id], lambda types: types.count("WorkflowPhaseChanged") >= 2)
    revision = {"workflow_id": str(workflow_id), "task_ids": [str(c)], "reason": "again"}
    await client.processed("RequestRevision", revision)
    await until(engine, [c], lambda types: types.count("TaskQueued") == 2)
    await client.processed("StartTask", {"task_id": str(c), "worker": alice})
    await client.processed("CompleteTask", {"task_id": str(c), "output": "better"})
    await until(engine, [workflow_id], lambda types: types.count("WorkflowPhaseChanged") >= 3)
    await client.processed("CompleteWorkflow", {"workflow_id": str(workflow_id)})
    done = await until(engine, [workflow_id], lambda types: "WorkflowCompleted" in types)
    assert [event["type"] for event in done].count("WorkflowCompleted") == 1


async def test_a_task_over_its_hard_time_limit_fails(
    client: Client, people: People, engine: AsyncEngine
) -> None:
    alice = people.principal("alice")
    project_id = await project(client, people, auto_approve_max_steps=5)
    slow = human("Slow", alice, soft_limit=1, hard_limit=2)
    plan_id = await submitted(client, project_id, [slow])
    found = await until(engine, [plan_id], lambda types: "PlanWorkflowStarted" in types)
    workflow_id = uuid.UUID(
        next(e for e in found if e["type"] == "PlanWorkflowStarted")["data"]["workflow_id"]
    )
    started = await until(engine, [workflow_id], lambda types: "WorkflowStarted" in types)
    (task,) = [uuid.UUID(t) for t in started[0]["data"]["task_ids"]]
    await until(engine, [task], lambda types: "TaskQueued" in types)
    await client.processed("StartTask", {"task_id": str(task), "worker": alice})
    failed = await until(engine, [task], lambda types: "TaskFailed" in types)
    types = [event["type"] for event in failed]
    assert types.index("TaskTimeLimitApproaching") < types.index("TaskFailed")
    failure = next(event for event in failed if event["type"] == "TaskFailed")
    assert "time limit" in failure["data"]["error"]
