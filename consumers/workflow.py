"""The workflow consumer: moves an approved plan's workflow on, one command at a time.

It reads events and decides, from the state they point at, which command comes next; every
command goes through the outbox as `system:workflow` (the unit's correlation, caused by the
event), so it is sent if and only if the inbox row of the event commits:

- `PlanApproved` -> `StartWorkflow` (workflow id derived from the plan: `workflow_id_for`);
- `WorkflowStarted` -> `BeginExecution` (the processor queues the tasks that wait for nothing);
- `TaskCompleted`, `TaskCancelled` -> `QueueTask` for every pending task whose dependencies
  are now completed (all at once: independent tasks run in parallel), or `BeginReview` once
  every task is completed or cancelled;
- `TaskFailed` -> `RetryTask` while attempts are left; then, if the plan's
  `settings.on_task_failure` is `fail`, `FailWorkflow`; if `wait`, nothing (people decide);
- `TaskStarted` -> two timers (`infra.scheduler.timers`): at the step's soft limit
  `WarnTaskTimeLimit`, at its hard limit `FailTask` naming the attempt; `TaskCompleted`,
  `TaskFailed` and `TaskCancelled` cancel the task's timers.

Ordered per aggregate (`Ordered`): one task's events are handled in the order they were
published, so a task's timers are always armed before the same attempt's end cancels them.
The tasks of one workflow are different aggregates and may be handled in parallel; that is
safe because every decision reads the current state, and the processor refuses what has
become stale or doubled (`QueueTask` of a task that is not pending or whose dependencies are
not completed, `BeginReview` out of execution, `StartWorkflow` of a plan whose workflow
started, a timer's `FailTask` of an attempt that is over). Two completions seen together may
each queue the same task: one `QueueTask` is processed, the other rejected, nothing doubles.
A redelivered event is the inbox's: acknowledged, nothing sent again; one published again
under a new id finds its work done (the plan's workflow started, the workflow out of
planning) and sends nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.task import TaskStatus
from domain.workflow import ready_tasks, workflow_id_for
from events import Actor, Command, Envelope
from events.plan import PlanApproved
from events.task import (
    FailTask,
    QueueTask,
    RetryTask,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    WarnTaskTimeLimit,
)
from events.workflow import (
    BeginExecution,
    BeginReview,
    FailWorkflow,
    StartWorkflow,
    WorkflowPhase,
    WorkflowStarted,
)
from infra.consumers import Consumer, Ordered
from infra.message_context import MessageContext
from infra.scheduler.timers import cancel, schedule

if TYPE_CHECKING:
    from uuid import UUID

    from events import Message
    from infra.db.uow import UnitOfWork

ACTOR = Actor.system("workflow")
_DONE = frozenset({TaskStatus.COMPLETED, TaskStatus.CANCELLED})


async def handle_plan_approved(envelope: Envelope[PlanApproved], uow: UnitOfWork) -> None:
    """An approved plan starts its one workflow (a second start is refused by the domain)."""
    plan_id = envelope.data.plan_id
    plan = await uow.aggregates.plans.get(plan_id)
    if plan is not None and plan.workflow_id is not None:
        return  # already started (a re-published event): nothing to ask again
    await _send(uow, envelope, StartWorkflow(workflow_id=workflow_id_for(plan_id), plan_id=plan_id))


async def handle_workflow_started(envelope: Envelope[WorkflowStarted], uow: UnitOfWork) -> None:
    """A started workflow goes into execution."""
    workflow = await uow.aggregates.workflows.get(envelope.data.workflow_id)
    if workflow is not None and workflow.phase is not WorkflowPhase.PLANNING:
        return  # already moved on (a re-published event)
    await _send(uow, envelope, BeginExecution(workflow_id=envelope.data.workflow_id))


async def handle_task_started(envelope: Envelope[TaskStarted], uow: UnitOfWork) -> None:
    """Arm the attempt's soft and hard time limits (keys unique per attempt start)."""
    event = envelope.data
    task = await uow.aggregates.tasks.get(event.task_id)
    if task is None or task.status is not TaskStatus.RUNNING or task.attempts != event.attempt:
        return  # that attempt is over already: nothing to time
    group, started = timer_group(event.task_id), envelope.occurred_at
    uow.context = _context(envelope)
    hard_minutes = int(task.step.hard_limit.total_seconds() // 60)
    schedule(
        uow,
        key=f"{group}:{envelope.id}:soft",
        due=started + task.step.soft_limit,
        command=WarnTaskTimeLimit(task_id=event.task_id, attempt=event.attempt),
        group=group,
    )
    schedule(
        uow,
        key=f"{group}:{envelope.id}:hard",
        due=started + task.step.hard_limit,
        command=FailTask(
            task_id=event.task_id,
            error=f"hard time limit of {hard_minutes} min passed",
            attempt=event.attempt,
        ),
        group=group,
    )


async def handle_task_completed(envelope: Envelope[TaskCompleted], uow: UnitOfWork) -> None:
    """Stop the attempt's timers; queue what its completion made ready, or begin review."""
    _cancel_timers(uow, envelope, envelope.data.task_id)
    await _advance(uow, envelope, envelope.data.workflow_id)


async def handle_task_cancelled(envelope: Envelope[TaskCancelled], uow: UnitOfWork) -> None:
    """Stop the task's timers; a cancelled task may leave only finished ones: review."""
    _cancel_timers(uow, envelope, envelope.data.task_id)
    await _advance(uow, envelope, envelope.data.workflow_id)


async def handle_task_failed(envelope: Envelope[TaskFailed], uow: UnitOfWork) -> None:
    """Stop the attempt's timers; retry, or apply the plan's failure policy."""
    event = envelope.data
    _cancel_timers(uow, envelope, event.task_id)
    if event.retryable:
        await _send(uow, envelope, RetryTask(task_id=event.task_id))
        return
    workflow = await uow.aggregates.workflows.get(event.workflow_id)
    if workflow is None or workflow.phase is not WorkflowPhase.EXECUTION:
        return
    if workflow.on_task_failure == "fail":
        reason = f"task {event.task_id} failed after {event.attempt} attempts: {event.error}"
        command = FailWorkflow(
            workflow_id=workflow.id, task_id=event.task_id, reason=reason[:4_000]
        )
        await _send(uow, envelope, command)
    # "wait": nothing automatic; people cancel the task or the workflow (docs/workflow.md)


def timer_group(task_id: UUID) -> str:
    """The timer group of a task's time limits (`cancel` names it)."""
    return f"task:{task_id}"


async def _advance(uow: UnitOfWork, envelope: Envelope[Message], workflow_id: UUID) -> None:
    workflow = await uow.aggregates.workflows.get(workflow_id)
    if workflow is None or workflow.phase is not WorkflowPhase.EXECUTION:
        return  # cancelled, failed, or already in review: nothing to move
    tasks = [await uow.aggregates.tasks.require(task_id) for task_id in workflow.task_ids]
    if all(task.status in _DONE for task in tasks):
        await _send(uow, envelope, BeginReview(workflow_id=workflow_id))
        return
    for task in ready_tasks(tasks):
        await _send(uow, envelope, QueueTask(task_id=task.id))


def _cancel_timers(uow: UnitOfWork, envelope: Envelope[Message], task_id: UUID) -> None:
    uow.context = _context(envelope)
    cancel(uow, group=timer_group(task_id))


async def _send(uow: UnitOfWork, envelope: Envelope[Message], command: Command) -> None:
    await uow.outbox.add_command(command, context=_context(envelope))


def _context(envelope: Envelope[Message]) -> MessageContext:
    """The event's correlation, caused by it, sent by `system:workflow` (not the event's actor)."""
    return MessageContext.caused_by(envelope, actor=ACTOR)


# Ordered by aggregate: see the module docstring. Queues `hisho.workflow.p0…p3`.
CONSUMER = Consumer(
    name="workflow",
    handlers={
        PlanApproved: handle_plan_approved,
        WorkflowStarted: handle_workflow_started,
        TaskStarted: handle_task_started,
        TaskCompleted: handle_task_completed,
        TaskFailed: handle_task_failed,
        TaskCancelled: handle_task_cancelled,
    },
    ordered=Ordered(partitions=4),
)
