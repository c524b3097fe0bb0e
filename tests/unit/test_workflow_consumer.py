"""The workflow consumer's decisions, with the real command processor on the fakes
(`tests/workflow_fakes.FakeCycle`): approval to review through dependencies, retries and the
failure policy, time limits on the scheduler's timers, and `system:workflow` as the sender."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from domain.workflow import task_id_for, workflow_id_for
from events import Actor, catalog
from events.plan import ApprovePlan, DraftPlan, HumanStep, PlanSettings, SubmitPlan
from events.project import ApprovalPolicy, CreateProject
from events.task import CancelTask, CompleteTask, FailTask, StartTask
from infra.db.command_status import CommandState
from tests.command_scenarios import ACTOR
from tests.consumer_support import deliver_with_retries
from tests.workflow_fakes import FakeCycle

if TYPE_CHECKING:
    from events import Envelope, Message

OWNER = ACTOR.principal  # owns the project, approves, and is every step's assignee
A, B, C = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)
WORKFLOW = Actor.system("workflow")


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


async def approved(
    cycle: FakeCycle, *steps: HumanStep, settings: PlanSettings | None = None
) -> uuid.UUID:
    """Draft, submit and approve a plan of `steps`; the id of its workflow."""
    project_id, plan_id = uuid.uuid4(), uuid.uuid4()
    policy = ApprovalPolicy(approvers=(OWNER,), required_approvals=1)
    await cycle.send(CreateProject(project_id=project_id, name="P", policy=policy))
    draft = DraftPlan(
        plan_id=plan_id,
        project_id=project_id,
        title="Launch",
        steps=steps,
        settings=settings or PlanSettings(),
    )
    await cycle.send(draft)
    await cycle.send(SubmitPlan(plan_id=plan_id))
    await cycle.send(ApprovePlan(plan_id=plan_id))
    return workflow_id_for(plan_id)


def queued(cycle: FakeCycle) -> list[uuid.UUID]:
    return [e.data.task_id for e in cycle.events("TaskQueued")]  # type: ignore[attr-defined]


def phase(cycle: FakeCycle, workflow_id: uuid.UUID) -> str:
    return str(cycle.db.states[("workflow", workflow_id)][1]["status"])


async def work(cycle: FakeCycle, task_id: uuid.UUID, *, ok: bool = True) -> None:
    await cycle.send(StartTask(task_id=task_id, worker=OWNER))
    if ok:
        await cycle.send(CompleteTask(task_id=task_id, output="done"))
    else:
        await cycle.send(FailTask(task_id=task_id, error="broke"))


def sent_by_the_consumer(cycle: FakeCycle) -> list[Envelope[Message]]:
    """The commands the workflow consumer sent (the events they caused carry its actor too)."""
    commands = (e for e in cycle.db.envelopes if catalog.entry(e.type).kind == "command")
    return [e for e in commands if e.actor == WORKFLOW]


async def test_independent_tasks_are_queued_together_a_dependent_one_after_both_then_review() -> (
    None
):
    cycle = FakeCycle()
    workflow_id = await approved(cycle, step(A), step(B), step(C, A, B))
    task = {s: task_id_for(workflow_id, s) for s in (A, B, C)}
    assert [e.type for e in sent_by_the_consumer(cycle)] == ["StartWorkflow", "BeginExecution"]
    assert queued(cycle) == [task[A], task[B]]  # together, by BeginExecution
    assert phase(cycle, workflow_id) == "execution"
    await work(cycle, task[A])
    assert queued(cycle) == [task[A], task[B]]  # C still waits for B
    await work(cycle, task[B])
    assert queued(cycle) == [task[A], task[B], task[C]]
    await work(cycle, task[C])
    assert phase(cycle, workflow_id) == "review"
    commands = sent_by_the_consumer(cycle)
    assert [e.type for e in commands] == [
        "StartWorkflow",
        "BeginExecution",
        "QueueTask",
        "BeginReview",
    ]
    for command in commands:  # system-only ones too: all processed, as system:workflow
        assert cycle.status(command.id).status is CommandState.PROCESSED


async def test_a_failed_task_is_retried_then_fails_the_workflow_under_the_fail_policy() -> None:
    cycle = FakeCycle()
    workflow_id = await approved(cycle, step(A), step(B))
    task_a = task_id_for(workflow_id, A)
    for _ in range(3):  # three attempts (the default), each failed
        await work(cycle, task_a, ok=False)
    assert [e.type for e in sent_by_the_consumer(cycle)][2:] == [
        "RetryTask",
        "RetryTask",
        "FailWorkflow",
    ]
    (failed,) = cycle.events("WorkflowFailed")
    assert (failed.data.task_id, phase(cycle, workflow_id)) == (task_a, "failed")  # type: ignore[attr-defined]
    assert "failed after 3 attempts: broke" in failed.data.reason  # type: ignore[attr-defined]
    (cancelled,) = cycle.events("TaskCancelled")  # B, unfinished, is cancelled with it
    assert cancelled.data.task_id == task_id_for(workflow_id, B)  # type: ignore[attr-defined]


async def test_under_the_wait_policy_nothing_happens_until_a_person_cancels_the_task() -> None:
    cycle = FakeCycle()
    workflow_id = await approved(
        cycle, step(A), step(B), settings=PlanSettings(on_task_failure="wait")
    )
    task_a, task_b = task_id_for(workflow_id, A), task_id_for(workflow_id, B)
    await work(cycle, task_b)
    for _ in range(3):
        await work(cycle, task_a, ok=False)
    assert cycle.events("WorkflowFailed") == []
    assert phase(cycle, workflow_id) == "execution"
    assert [e.type for e in sent_by_the_consumer(cycle)][2:] == ["RetryTask", "RetryTask"]
    await cycle.send(CancelTask(task_id=task_a, reason="we do without A"))  # a person decides
    assert phase(cycle, workflow_id) == "review"


async def test_the_soft_limit_warns_and_the_hard_limit_fails_the_running_attempt() -> None:
    cycle = FakeCycle()
    workflow_id = await approved(cycle, step(A))
    task_a = task_id_for(workflow_id, A)
    await cycle.send(StartTask(task_id=task_a, worker=OWNER))
    assert [e.type for e in await cycle.fire(timedelta(minutes=4))] == []
    (warn,) = await cycle.fire(timedelta(minutes=1, seconds=1))
    assert warn.type == "WarnTaskTimeLimit"
    (approaching,) = cycle.events("TaskTimeLimitApproaching")
    assert approaching.data.attempt == 1  # type: ignore[attr-defined]
    (hard,) = await cycle.fire(timedelta(minutes=2))
    assert hard.type == "FailTask"
    (failed,) = cycle.events("TaskFailed")
    assert failed.data.error == "hard time limit of 7 min passed"  # type: ignore[attr-defined]
    assert failed.data.attempt == 1  # type: ignore[attr-defined]
    assert cycle.events("TaskRetried")  # and it has attempts left: retried


async def test_an_attempt_that_ends_in_time_cancels_its_timers() -> None:
    cycle = FakeCycle()
    workflow_id = await approved(cycle, step(A))
    await work(cycle, task_id_for(workflow_id, A))
    assert await cycle.fire(timedelta(hours=1)) == []
    assert cycle.events("TaskTimeLimitApproaching") == []


async def test_a_redelivered_completion_queues_nothing_twice() -> None:
    cycle = FakeCycle()
    workflow_id = await approved(cycle, step(A), step(C, A))
    await work(cycle, task_id_for(workflow_id, A))
    (completed,) = cycle.events("TaskCompleted")
    before = len(cycle.db.envelopes)
    cycle._relayed -= len(cycle.db.envelopes) - cycle.db.envelopes.index(completed)  # relay again
    await cycle.pump()
    assert len(cycle.events("QueueTask")) == 1
    assert len(cycle.db.envelopes) == before


async def test_a_republished_approval_or_start_sends_nothing_once_done() -> None:
    cycle = FakeCycle()
    await approved(cycle, step(A))
    sent = len(sent_by_the_consumer(cycle))
    for type_name in ("PlanApproved", "WorkflowStarted"):
        (event,) = cycle.events(type_name)
        copy = event.model_copy(update={"id": uuid.uuid4()})  # published again: a new id
        await deliver_with_retries(cycle.workflow, copy)
    assert len(sent_by_the_consumer(cycle)) == sent


async def test_commands_are_sent_by_system_workflow_caused_by_the_event_in_its_correlation() -> (
    None
):
    cycle = FakeCycle()
    workflow_id = await approved(cycle, step(A))
    (approval,) = cycle.events("PlanApproved")
    (start,) = cycle.events("StartWorkflow")
    assert start.data.workflow_id == workflow_id  # type: ignore[attr-defined]
    assert start.data.plan_id == approval.data.plan_id  # type: ignore[attr-defined]
    assert (start.actor, start.causation_id, start.correlation_id) == (
        WORKFLOW,
        approval.id,
        approval.correlation_id,
    )
    assert approval.actor == ACTOR  # the approver's event; the command is hisho's
