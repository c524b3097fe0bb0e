"""Workflow and task commands: one small function each, domain calls only.

A workflow command that moves its tasks does so in the same transaction: `BeginExecution`
queues the pending tasks whose dependencies are completed, `RequestRevision` reopens the
chosen ones and queues those ready, `CancelWorkflow` and `FailWorkflow` cancel the unfinished
ones. One command, one atomic outcome. Tasks that wait for dependencies are queued later by
the workflow consumer (`QueueTask`, refused while a dependency is not completed).

Moving a workflow is for its project's members; working a task for its assignee (human) or
hisho (AI: `Task.require_worker`); queueing, retrying, failing a workflow and time-limit
warnings are hisho's (system-only commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumers.command_handlers import require_member
from domain.task import Task, TaskStatus
from domain.workflow import Workflow, ready_tasks, waiting_for
from events.task import (
    CancelTask,
    CompleteTask,
    FailTask,
    QueueTask,
    ReopenTask,
    RetryTask,
    StartTask,
    WarnTaskTimeLimit,
)
from events.workflow import (
    BeginExecution,
    BeginReview,
    CancelWorkflow,
    CompleteWorkflow,
    FailWorkflow,
    RequestRevision,
    StartWorkflow,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

    from consumers.command_handlers import Decision, Handler
    from events import Command
    from infra.db.repositories import Aggregates

_UNFINISHED = frozenset({TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING})


async def start_workflow(command: StartWorkflow, aggregates: Aggregates, ctx: Decision) -> None:
    """StartWorkflow -> Workflow.start: the workflow and one task per plan step."""
    await aggregates.workflows.require_absent(command.workflow_id)
    plan = await aggregates.plans.require(command.plan_id)
    await require_member(plan.project_id, aggregates, ctx.actor)
    workflow, tasks = Workflow.start(workflow_id=command.workflow_id, plan=plan, at=ctx.at)
    aggregates.workflows.add(workflow)
    for task in tasks:
        aggregates.tasks.add(task)


async def begin_execution(command: BeginExecution, aggregates: Aggregates, ctx: Decision) -> None:
    """BeginExecution -> Workflow.begin_execution, then queue the tasks that wait for nothing."""
    workflow = await _workflow(command.workflow_id, aggregates, ctx)
    workflow.begin_execution(at=ctx.at)
    for task in ready_tasks(await _tasks(workflow.task_ids, aggregates)):
        task.queue(at=ctx.at)


async def begin_review(command: BeginReview, aggregates: Aggregates, ctx: Decision) -> None:
    """BeginReview -> Workflow.begin_review with its tasks' statuses."""
    workflow = await _workflow(command.workflow_id, aggregates, ctx)
    tasks = await _tasks(workflow.task_ids, aggregates)
    workflow.begin_review(task_statuses={task.id: task.status for task in tasks}, at=ctx.at)


async def request_revision(command: RequestRevision, aggregates: Aggregates, ctx: Decision) -> None:
    """RequestRevision -> Workflow.request_revision; reopen the chosen tasks, queue those ready."""
    workflow = await _workflow(command.workflow_id, aggregates, ctx)
    workflow.request_revision(task_ids=command.task_ids, reason=command.reason, at=ctx.at)
    tasks = await _tasks(workflow.task_ids, aggregates)
    for task in tasks:
        if task.id in command.task_ids:
            task.reopen(feedback=command.reason, at=ctx.at)
    for task in ready_tasks(tasks):
        task.queue(at=ctx.at)


async def complete_workflow(
    command: CompleteWorkflow, aggregates: Aggregates, ctx: Decision
) -> None:
    """CompleteWorkflow -> Workflow.complete."""
    workflow = await _workflow(command.workflow_id, aggregates, ctx)
    workflow.complete(at=ctx.at)


async def cancel_workflow(command: CancelWorkflow, aggregates: Aggregates, ctx: Decision) -> None:
    """CancelWorkflow -> Workflow.cancel, then cancel its unfinished tasks."""
    workflow = await _workflow(command.workflow_id, aggregates, ctx)
    workflow.cancel(reason=command.reason, at=ctx.at)
    await _cancel_unfinished(workflow, command.reason, aggregates, ctx)


async def fail_workflow(command: FailWorkflow, aggregates: Aggregates, ctx: Decision) -> None:
    """FailWorkflow -> Workflow.fail (its task failed for good), then cancel the unfinished."""
    workflow = await aggregates.workflows.require(command.workflow_id)
    task = await aggregates.tasks.require(command.task_id)
    workflow.fail(task=task, reason=command.reason, at=ctx.at)
    await _cancel_unfinished(workflow, command.reason, aggregates, ctx)


async def queue_task(command: QueueTask, aggregates: Aggregates, ctx: Decision) -> None:
    """QueueTask -> Task.queue, once the task's dependencies are completed."""
    task = await aggregates.tasks.require(command.task_id)
    workflow = await aggregates.workflows.require(task.workflow_id)
    tasks = await _tasks(workflow.task_ids, aggregates)
    statuses = {other.id: other.status for other in tasks}
    task.queue(waiting_for=waiting_for(task, statuses), at=ctx.at)


async def start_task(command: StartTask, aggregates: Aggregates, ctx: Decision) -> None:
    """StartTask -> Task.start (a new attempt)."""
    task = await aggregates.tasks.require(command.task_id)
    task.start(worker=command.worker, by=ctx.actor, at=ctx.at)


async def complete_task(command: CompleteTask, aggregates: Aggregates, ctx: Decision) -> None:
    """CompleteTask -> Task.complete with its output."""
    task = await aggregates.tasks.require(command.task_id)
    task.complete(output=command.output, by=ctx.actor, at=ctx.at)


async def fail_task(command: FailTask, aggregates: Aggregates, ctx: Decision) -> None:
    """FailTask -> Task.fail."""
    task = await aggregates.tasks.require(command.task_id)
    task.fail(error=command.error, by=ctx.actor, at=ctx.at, attempt=command.attempt)


async def warn_task_time_limit(
    command: WarnTaskTimeLimit, aggregates: Aggregates, ctx: Decision
) -> None:
    """WarnTaskTimeLimit -> Task.warn_time_limit (the attempt's soft limit passed)."""
    task = await aggregates.tasks.require(command.task_id)
    task.warn_time_limit(attempt=command.attempt, at=ctx.at)


async def retry_task(command: RetryTask, aggregates: Aggregates, ctx: Decision) -> None:
    """RetryTask -> Task.retry (if attempts are left)."""
    (await aggregates.tasks.require(command.task_id)).retry(at=ctx.at)


async def cancel_task(command: CancelTask, aggregates: Aggregates, ctx: Decision) -> None:
    """CancelTask -> Task.cancel, by a member."""
    task = await _member_task(command.task_id, aggregates, ctx)
    task.cancel(reason=command.reason, at=ctx.at)


async def reopen_task(command: ReopenTask, aggregates: Aggregates, ctx: Decision) -> None:
    """ReopenTask -> Task.reopen with the reviewer's feedback, by a member."""
    task = await _member_task(command.task_id, aggregates, ctx)
    task.reopen(feedback=command.feedback, at=ctx.at)


async def _workflow(workflow_id: UUID, aggregates: Aggregates, ctx: Decision) -> Workflow:
    workflow = await aggregates.workflows.require(workflow_id)
    await require_member(workflow.project_id, aggregates, ctx.actor)
    return workflow


async def _member_task(task_id: UUID, aggregates: Aggregates, ctx: Decision) -> Task:
    task = await aggregates.tasks.require(task_id)
    await require_member(task.project_id, aggregates, ctx.actor)
    return task


async def _cancel_unfinished(
    workflow: Workflow, reason: str | None, aggregates: Aggregates, ctx: Decision
) -> None:
    for task in await _tasks(workflow.task_ids, aggregates):
        if task.status in _UNFINISHED:
            task.cancel(reason=reason, at=ctx.at)


async def _tasks(task_ids: Iterable[UUID], aggregates: Aggregates) -> list[Task]:
    return [await aggregates.tasks.require(task_id) for task_id in task_ids]


HANDLERS: dict[type[Command], Handler] = {
    StartWorkflow: start_workflow,
    BeginExecution: begin_execution,
    BeginReview: begin_review,
    RequestRevision: request_revision,
    CompleteWorkflow: complete_workflow,
    CancelWorkflow: cancel_workflow,
    FailWorkflow: fail_workflow,
    QueueTask: queue_task,
    StartTask: start_task,
    CompleteTask: complete_task,
    FailTask: fail_task,
    RetryTask: retry_task,
    WarnTaskTimeLimit: warn_task_time_limit,
    CancelTask: cancel_task,
    ReopenTask: reopen_task,
}
