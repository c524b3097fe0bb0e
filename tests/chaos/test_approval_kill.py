"""kill -9 of the approval consumer mid-work, then a restart: every submitted plan is asked
for once and expires once.

Plans are submitted (2-of-3 policy, a deadline, no reminders) while the approval consumer is
not running, so their `PlanSubmitted` events wait in its queues. It is started, frozen
(SIGSTOP) once some plans have been handled but not all, and killed while frozen, so the
kill lands on work in flight. After a restart, each plan must have exactly one
`RequestApprovals` (one per approver `ApprovalRequested` each), one deadline timer, and
then exactly one `PlanExpired`: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import text

from tests.components_support import component_env, components, free_port
from tests.ingress_support import cli_key, hisho_cli
from tests.processor_support import backlog_worked_off, eventually

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

PLANS = 120
DEADLINE_SECONDS = 12  # after the submit: the restart comes well before it
SETTLE_DEADLINE = 60.0

_COUNTS = text(
    """SELECT
        count(*) FILTER (WHERE type = 'RequestApprovals') AS requests,
        count(*) FILTER (WHERE type = 'ApprovalRequested') AS asked,
        count(*) FILTER (WHERE type = 'PlanExpired') AS expired
    FROM outbox WHERE (data ->> 'plan_id')::uuid = ANY(:plans)"""
)
_HANDLED = text(
    "SELECT count(DISTINCT data ->> 'plan_id') FROM outbox"
    " WHERE type = 'RequestApprovals' AND (data ->> 'plan_id')::uuid = ANY(:plans)"
)
_TIMERS = text("SELECT count(*) FROM timers WHERE key = ANY(:keys)")


async def _scalar(engine: AsyncEngine, query: Any, **params: Any) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(query, params)).scalar_one())


async def _submit(http: httpx.AsyncClient, auth: dict[str, str], approvers: list[str]) -> uuid.UUID:
    project_id, plan_id = str(uuid.uuid4()), uuid.uuid4()
    policy = {
        "approvers": approvers,
        "required_approvals": 2,
        "approval_deadline": f"PT{DEADLINE_SECONDS}S",
        "remind_before": [],
    }
    step = {"kind": "human", "step_id": str(uuid.uuid4()), "title": "Sign"}
    step |= {"assignee": approvers[0], "instructions": "sign"}
    commands = [
        ("CreateProject", {"project_id": project_id, "name": "Chaos", "policy": policy}),
        (
            "DraftPlan",
            {"plan_id": str(plan_id), "project_id": project_id, "title": "T", "steps": [step]},
        ),
        ("SubmitPlan", {"plan_id": str(plan_id)}),
    ]
    for command, body in commands:
        accepted = await http.post(f"/v1/commands/{command}", json=body, headers=auth)
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["location"]

        async def processed(location: str = location) -> None:
            status = (await http.get(location, headers=auth)).json()
            assert status["status"] == "processed", status

        await eventually(processed, deadline=SETTLE_DEADLINE)
    return plan_id


async def test_kill_9_of_the_approval_consumer_mid_work_loses_and_doubles_nothing(
    settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    port = free_port()
    env = component_env(
        settings, HISHO_INGRESS_PORT=str(port), HISHO_SCHEDULER_POLL_INTERVAL="0.05"
    )
    hisho_cli(env, "migrate")
    hisho_cli(env, "topology")  # the approval consumer's queues hold the events meanwhile
    key_id, token = cli_key(env, "commands:write", "state:read")
    approvers = [f"key:{key_id}", "key:chaos-bob", "key:chaos-carol"]
    auth = {"Authorization": f"Bearer {token}"}
    with components(env, tmp_path, ("relay", "processor", "scheduler", "ingress")) as run:
        await backlog_worked_off(settings)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            gate = asyncio.Semaphore(8)

            async def one() -> uuid.UUID:
                async with gate:
                    return await _submit(http, auth, approvers)

            plans = list(await asyncio.gather(*(one() for _ in range(PLANS))))
        approval = run.start("approval")

        async def some_handled() -> int:
            handled = await _scalar(engine, _HANDLED, plans=plans)
            assert handled >= 1
            return handled

        await eventually(some_handled, deadline=SETTLE_DEADLINE)
        os.kill(approval.pid, signal.SIGSTOP)  # frozen mid-work: the kill lands on it
        frozen_at = await _scalar(engine, _HANDLED, plans=plans)
        run.kill("approval")
        assert frozen_at < PLANS, "the kill found nothing left to do: it proves nothing"
        run.start("approval")

        async def all_asked_once() -> None:
            counts = await _counts(engine, plans)
            assert counts["requests"] == PLANS, counts
            assert counts["asked"] == 3 * PLANS, counts

        await eventually(all_asked_once, deadline=SETTLE_DEADLINE)
        deadlines = [f"approval:{plan}:deadline" for plan in plans]
        assert await _scalar(engine, _TIMERS, keys=deadlines) == PLANS

        async def all_expired_once() -> None:
            counts = await _counts(engine, plans)
            assert counts["expired"] == PLANS, counts

        await eventually(all_expired_once, deadline=SETTLE_DEADLINE)
        await asyncio.sleep(1.0)
        assert await _counts(engine, plans) == {
            "requests": PLANS,
            "asked": 3 * PLANS,
            "expired": PLANS,
        }


async def _counts(engine: AsyncEngine, plans: list[uuid.UUID]) -> dict[str, int]:
    async with engine.connect() as connection:
        row = (await connection.execute(_COUNTS, {"plans": plans})).one()
    return {"requests": row.requests, "asked": row.asked, "expired": row.expired}
