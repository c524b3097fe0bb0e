"""A plan through its workflow on the real servers: the command processor, the workflow
consumer and the relay in this process, a private database, the test vhost.

Steps A and B are independent, C depends on both: approval starts the workflow, A and B are
queued together (one `BeginExecution`), C only once both completed, then review. Each
attempt's time limits are armed in PostgreSQL's `timers` and cancelled when it completes.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from consumers.workflow import CONSUMER
from domain.workflow import task_id_for, workflow_id_for
from events.plan import ApprovePlan, DraftPlan, HumanStep, SubmitPlan
from events.project import ApprovalPolicy, CreateProject
from events.task import CompleteTask, StartTask
from hisho.bootstrap import run_on_app
from infra.db.command_status import CommandState
from infra.db.engine import create_engine
from infra.db.outbox import envelope_from_row
from infra.db.tables import inbox, outbox
from producers import relay
from tests.command_scenarios import ACTOR, command_envelope
from tests.consumer_harness import running
from tests.processor_support import (
    Deliveries,
    command_status,
    counting_units,
    eventually,
    processor_running,
    publish_command,
)
from tests.relay_harness import private_database

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Command, Envelope, Message
    from infra.settings import Settings

OWNER = ACTOR.principal
A, B, C = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)


def step(step_id: uuid.UUID, *depends_on: uuid.UUID) -> HumanStep:
    return HumanStep(
        step_id=step_id,
        title=f"step {step_id.int}",
        assignee=OWNER,
        instructions="do",
        depends_on=depends_on,
        soft_limit=timedelta(minutes=5),
        hard_limit=timedelta(minutes=7),
    )


class Cycle:
    """Sends commands as the ingress does and reads the private database's outbox."""

    def __init__(self, amqp: AbstractRobustConnection, engine: AsyncEngine) -> None:
        self.amqp, self.engine = amqp, engine

    async def processed(self, command: Command) -> None:
        envelope = command_envelope(command, actor=ACTOR)
        await publish_command(self.amqp, envelope)

        async def answered() -> None:
            status = await command_status(self.engine, envelope.id)
            assert status is not None, f"{command!r} not answered yet"
            assert status.status is CommandState.PROCESSED, status.problem

        await eventually(answered)

    async def events(self, type_name: str, workflow_id: uuid.UUID) -> list[Envelope[Message]]:
        query = select(outbox).where(outbox.c.type == type_name).order_by(outbox.c.seq)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        found = [envelope_from_row(row) for row in rows]
        return [e for e in found if getattr(e.data, "workflow_id", None) == workflow_id]

    async def queued(self, workflow_id: uuid.UUID, count: int) -> list[Envelope[Message]]:
        async def enough() -> list[Envelope[Message]]:
            found = await self.events("TaskQueued", workflow_id)
            assert len(found) >= count, found
            return found

        return await eventually(enough)

    async def handled(self, envelope: Envelope[Message]) -> None:
        """Wait until the workflow consumer applied `envelope` (its inbox row)."""
        query = select(inbox).where(
            inbox.c.consumer == CONSUMER.name, inbox.c.message_id == envelope.id
        )

        async def claimed() -> None:
            async with self.engine.connect() as connection:
                assert (await connection.execute(query)).first() is not None

        await eventually(claimed)

    async def work(self, task_id: uuid.UUID, workflow_id: uuid.UUID) -> None:
        """Start the task, see its time limits armed, complete it, see them cancelled."""
        await self.processed(StartTask(task_id=task_id, worker=OWNER))
        (started,) = await self._of_task("TaskStarted", task_id, workflow_id)
        await self.handled(started)
        group = f"task:{task_id}"
        armed = await self._rows(
            "SELECT key, type, due_at FROM timers WHERE timer_group = $1 ORDER BY due_at", group
        )
        assert [(row["key"], row["type"]) for row in armed] == [
            (f"{group}:{started.id}:soft", "WarnTaskTimeLimit"),
            (f"{group}:{started.id}:hard", "FailTask"),
        ]
        assert [row["due_at"] - started.occurred_at for row in armed] == [
            timedelta(minutes=5),
            timedelta(minutes=7),
        ]
        await self.processed(CompleteTask(task_id=task_id, output="done"))
        (completed,) = await self._of_task("TaskCompleted", task_id, workflow_id)
        await self.handled(completed)
        cancelled = await self._rows(
            "SELECT causation_id FROM timer_cancellations WHERE timer_group = $1", group
        )
        assert [row["causation_id"] for row in cancelled] == [completed.id]

    async def _of_task(
        self, type_name: str, task_id: uuid.UUID, workflow_id: uuid.UUID
    ) -> list[Envelope[Message]]:
        found = await self.events(type_name, workflow_id)
        return [e for e in found if e.data.task_id == task_id]  # type: ignore[attr-defined]

    async def _rows(self, sql: str, *args: object) -> list[Any]:
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            return list(await driver.fetch(sql, *args))


async def test_independent_tasks_run_together_and_the_dependent_one_after_both_then_review(
    settings: Settings, amqp: AbstractRobustConnection
) -> None:
    async with private_database(settings) as private:
        engine = create_engine(private)
        stop = asyncio.Event()
        relaying = asyncio.create_task(
            run_on_app(
                relay.run, "relay", private.model_copy(update={"relay_poll_interval": 0.05}), stop
            )
        )
        try:
            async with (
                processor_running(private, engine, counting_units(engine, Deliveries())),
                running(CONSUMER, engine, amqp, private.amqp),
            ):
                await _drive(Cycle(amqp, engine))
        finally:
            stop.set()
            await asyncio.wait_for(relaying, 20)
            await engine.dispose()


async def _drive(cycle: Cycle) -> None:
    project_id, plan_id = uuid.uuid4(), uuid.uuid4()
    workflow_id = workflow_id_for(plan_id)
    task = {s: task_id_for(workflow_id, s) for s in (A, B, C)}
    policy = ApprovalPolicy(approvers=(OWNER,), required_approvals=1)
    await cycle.processed(CreateProject(project_id=project_id, name="P", policy=policy))
    steps = (step(A), step(B), step(C, A, B))
    await cycle.processed(DraftPlan(plan_id=plan_id, project_id=project_id, title="T", steps=steps))
    await cycle.processed(SubmitPlan(plan_id=plan_id))
    await cycle.processed(ApprovePlan(plan_id=plan_id))

    first = await cycle.queued(workflow_id, 2)  # approval -> workflow started -> execution
    assert [e.data.task_id for e in first] == [task[A], task[B]]  # type: ignore[attr-defined]
    assert first[0].causation_id == first[1].causation_id  # together: one BeginExecution
    await cycle.work(task[A], workflow_id)
    assert len(await cycle.events("TaskQueued", workflow_id)) == 2  # C waits for B
    await cycle.work(task[B], workflow_id)
    third = (await cycle.queued(workflow_id, 3))[2]
    assert third.data.task_id == task[C]  # type: ignore[attr-defined]
    assert third.actor.principal == "system:workflow"  # queued by the consumer's QueueTask
    await cycle.work(task[C], workflow_id)

    async def in_review() -> None:
        moves = await cycle.events("WorkflowPhaseChanged", workflow_id)
        assert [m.data.to_phase for m in moves] == ["execution", "review"]  # type: ignore[attr-defined]

    await eventually(in_review)
