"""Task: one plan step being carried out, by a persona (AI) or a person, with attempts.

Version 2 of the task events carries the project on every event (null in one upcast from
v1). A human task is started, completed or failed by its assignee (or an admin); an AI task
by hisho alone (a `system:` principal); queueing, retrying and time-limit warnings are hisho's
(system only).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from annotated_types import Ge, Le
from pydantic import Field

from events.base import Command, DomainEvent
from events.catalog import catalog
from events.fields import Principal, Reason, Text
from events.plan import PlanStep
from events.upcasters import namespaced_v1, upcasters

Attempt = Annotated[int, Ge(1), Le(100)]


class QueueTask(Command):
    """Queue a pending task for execution (hisho's workflow orchestration: system only)."""

    task_id: UUID


class StartTask(Command):
    """Mark a queued task as running (a new attempt): by its assignee, or hisho for AI tasks."""

    task_id: UUID
    worker: Principal | None = None


class CompleteTask(Command):
    """Complete a running task with its output: by its assignee, or hisho for AI tasks."""

    task_id: UUID
    output: Text


class FailTask(Command):
    """Record that a running task's attempt failed: by its assignee, or hisho for AI tasks.

    `attempt`, if given, names the attempt meant (a time limit's timer does): refused if
    another attempt is running.
    """

    task_id: UUID
    error: Reason
    attempt: Attempt | None = None


class WarnTaskTimeLimit(Command):
    """Warn that a running attempt reached its soft time limit (hisho's timers: system only)."""

    task_id: UUID
    attempt: int = Field(ge=1, le=100)


class RetryTask(Command):
    """Queue a failed task again, if it has attempts left (hisho's own: system only)."""

    task_id: UUID


class CancelTask(Command):
    """Cancel a task that has not completed."""

    task_id: UUID
    reason: Reason | None = None


class ReopenTask(Command):
    """Send a completed task back to pending for revision, with the reviewer's feedback."""

    task_id: UUID
    feedback: Reason


class TaskCreated(DomainEvent):
    """A task was created from a plan step when its workflow started; `step.kind` is ai|human."""

    task_id: UUID
    workflow_id: UUID
    project_id: UUID
    step: PlanStep
    max_attempts: int = Field(ge=1, le=100)


class TaskQueued(DomainEvent):
    """A task is ready to run; carries its step (and any revision feedback) for the executor."""

    task_id: UUID
    workflow_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    step: PlanStep
    attempt: int = Field(ge=1, le=100)
    feedback: Reason | None


class TaskStarted(DomainEvent):
    """An attempt at a task began."""

    task_id: UUID
    workflow_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    attempt: int = Field(ge=1, le=100)
    worker: Principal | None


class TaskCompleted(DomainEvent):
    """A task finished with its output."""

    task_id: UUID
    workflow_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    attempt: int = Field(ge=1, le=100)
    output: Text


class TaskFailed(DomainEvent):
    """An attempt at a task failed; `retryable` says whether attempts are left."""

    task_id: UUID
    workflow_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    attempt: int = Field(ge=1, le=100)
    error: Reason
    retryable: bool


class TaskTimeLimitApproaching(DomainEvent):
    """A running attempt passed its soft time limit; at `hard_limit` it is failed."""

    task_id: UUID
    workflow_id: UUID
    project_id: UUID
    attempt: int = Field(ge=1, le=100)
    soft_limit: timedelta
    hard_limit: timedelta


class TaskRetried(DomainEvent):
    """A failed task was queued again; `attempt` is the number of the coming attempt."""

    task_id: UUID
    workflow_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    attempt: int = Field(ge=2, le=100)


class TaskCancelled(DomainEvent):
    """A task was cancelled before completing."""

    task_id: UUID
    workflow_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    reason: Reason | None


class TaskReopened(DomainEvent):
    """A completed task was sent back for revision; its attempts start again from zero."""

    task_id: UUID
    workflow_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    revision: int = Field(ge=1, le=1_000)
    feedback: Reason


catalog.add(QueueTask, version=1, system_only=True)
catalog.add(StartTask, version=2)
catalog.add(CompleteTask, version=1)
catalog.add(FailTask, version=1)
catalog.add(RetryTask, version=1, system_only=True)
catalog.add(WarnTaskTimeLimit, version=1, system_only=True)
catalog.add(CancelTask, version=1)
catalog.add(ReopenTask, version=1)
catalog.add(TaskCreated, version=2, routing_key="task.created")
catalog.add(TaskQueued, version=2, routing_key="task.queued")
catalog.add(TaskStarted, version=2, routing_key="task.started")
catalog.add(TaskCompleted, version=2, routing_key="task.completed")
catalog.add(TaskFailed, version=2, routing_key="task.failed")
catalog.add(TaskRetried, version=2, routing_key="task.retried")
catalog.add(TaskCancelled, version=2, routing_key="task.cancelled")
catalog.add(TaskReopened, version=2, routing_key="task.reopened")
catalog.add(TaskTimeLimitApproaching, version=1, routing_key="task.time_limit_approaching")

namespaced_v1(upcasters, "StartTask")
namespaced_v1(upcasters, "TaskCreated")
for _type in (
    "TaskQueued",
    "TaskStarted",
    "TaskCompleted",
    "TaskFailed",
    "TaskRetried",
    "TaskCancelled",
    "TaskReopened",
):
    namespaced_v1(upcasters, _type, project_id=None)
