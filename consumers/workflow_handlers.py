"""Workflow and task commands: one small function each, domain calls only.

A workflow command that moves its tasks does so in the same transaction (domain/workflow.py
leaves the choice open): `BeginExecution` queues the pending tasks, `RequestRevision` reopens
and queues the chosen ones, `CancelWorkflow` cancels the unfinished ones. One command, one
atomic outcome; no follow-up commands that could arrive out of order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.task import Task, TaskStatus
from domain.workflow import Workflow
from events.task import (
    CancelTask,
    CompleteTask,
    FailTask,
    QueueTask,
    ReopenTask,
    RetryTask,
    StartTask,
)
from events.workflow import (
    BeginExecution,
    BeginReview,
    CancelWorkflow,
    CompleteWorkflow,
    RequestRevision,
    StartWorkflow,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime
    from uuid import UUID

    from consumers.command_handlers import Handler
    from events import Command
    from infra.db.repositories import Aggregates

_UNFINISHED = frozenset({TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING})


async def start_workflow(command: StartWorkflow, aggregates: Aggregates, at: datetime) -> None:
    """StartWorkflow -> Workflow.start: the workflow and one task per plan step."""
    await aggregates.workflows.require_absent(command.workflow_id)
    plan = await aggregates.plans.require(command.plan_id)
    workflow, tasks = Workflow.start(workflow_id=command.workflow_id, plan=plan, at=at)
    aggregates.workflows.add(workflow)
    for task in tasks:
        aggregates.tasks.add(task)


async def begin_execution(command: BeginExecution, aggregates: Aggregates, at: datetime) -> None:
    """BeginExecution -> Workflow.begin_execution, then queue its pending tasks."""
    workflow = await aggregates.workflows.require(command.workflow_id)
    workflow.begin_execution(at=at)
    for task in await _tasks(workflow.task_ids, aggregates):
        if task.status is TaskStatus.PENDING:
            task.queue(at=at)


async def begin_review(command: BeginReview, aggregates: Aggregates, at: datetime) -> None:
    """BeginReview -> Workflow.begin_review with its tasks' statuses."""
    workflow = await aggregates.workflows.require(command.workflow_id)
    tasks = await _tasks(workflow.task_ids, aggregates)
    workflow.begin_review(task_statuses={task.id: task.status for task in tasks}, at=at)


async def request_revision(command: RequestRevision, aggregates: Aggregates, at: datetime) -> None:
    """RequestRevision -> Workflow.request_revision, then reopen and queue the chosen tasks."""
    workflow = await aggregates.workflows.require(command.workflow_id)
    workflow.request_revision(task_ids=command.task_ids, reason=command.reason, at=at)
    for task in await _tasks(command.task_ids, aggregates):
        task.reopen(feedback=command.reason, at=at)
        task.queue(at=at)


async def complete_workflow(
    command: CompleteWorkflow, aggregates: Aggregates, at: datetime
) -> None:
    """CompleteWorkflow -> Workflow.complete."""
    workflow = await aggregates.workflows.require(command.workflow_id)
    workflow.complete(at=at)


async def cancel_workflow(command: CancelWorkflow, aggregates: Aggregates, at: datetime) -> None:
    """CancelWorkflow -> Workflow.cancel, then cancel its unfinished tasks."""
    workflow = await aggregates.workflows.require(command.workflow_id)
    workflow.cancel(reason=command.reason, at=at)
    for task in await _tasks(workflow.task_ids, aggregates):
        if task.status in _UNFINISHED:
            task.cancel(reason=command.reason, at=at)


async def queue_task(command: QueueTask, aggregates: Aggregates, at: datetime) -> None:
    """QueueTask -> Task.queue."""
    (await aggregates.tasks.require(command.task_id)).queue(at=at)


async def start_task(command: StartTask, aggregates: Aggregates, at: datetime) -> None:
    """StartTask -> Task.start (a new attempt)."""
    (await aggregates.tasks.require(command.task_id)).start(worker=command.worker, at=at)


async def complete_task(command: CompleteTask, aggregates: Aggregates, at: datetime) -> None:
    """CompleteTask -> Task.complete with its output."""
    (await aggregates.tasks.require(command.task_id)).complete(output=command.output, at=at)


async def fail_task(command: FailTask, aggregates: Aggregates, at: datetime) -> None:
    """FailTask -> Task.fail."""
    (await aggregates.tasks.require(command.task_id)).fail(error=command.error, at=at)


async def retry_task(command: RetryTask, aggregates: Aggregates, at: datetime) -> None:
    """RetryTask -> Task.retry (if attempts are left)."""
    (await aggregates.tasks.require(command.task_id)).retry(at=at)


async def cancel_task(command: CancelTask, aggregates: Aggregates, at: datetime) -> None:
    """CancelTask -> Task.cancel."""
    (await aggregates.tasks.require(command.task_id)).cancel(reason=command.reason, at=at)


async def reopen_task(command: ReopenTask, aggregates: Aggregates, at: datetime) -> None:
    """ReopenTask -> Task.reopen with the reviewer's feedback."""
    (await aggregates.tasks.require(command.task_id)).reopen(feedback=command.feedback, at=at)


async def _tasks(task_ids: Iterable[UUID], aggregates: Aggregates) -> list[Task]:
    return [await aggregates.tasks.require(task_id) for task_id in task_ids]


HANDLERS: dict[type[Command], Handler] = {
    StartWorkflow: start_workflow,
    BeginExecution: begin_execution,
    BeginReview: begin_review,
    RequestRevision: request_revision,
    CompleteWorkflow: complete_workflow,
    CancelWorkflow: cancel_workflow,
    QueueTask: queue_task,
    StartTask: start_task,
    CompleteTask: complete_task,
    FailTask: fail_task,
    RetryTask: retry_task,
    CancelTask: cancel_task,
    ReopenTask: reopen_task,
}
