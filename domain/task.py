"""Task: pending -> queued -> running -> completed | failed, with counted attempts.

`attempts` counts the runs started (`start`). A failed task may be retried (back to queued,
announced by `TaskRetried` then `TaskQueued`) while `attempts < max_attempts`, so attempts
never exceed the maximum. Any task not completed may be cancelled. Review may reopen a
completed task (back to pending, attempts from zero, revision counted). AI tasks are run by
the ai_execution consumer on `task.queued`; people complete human tasks by command.

A human task is started, completed and failed by its assignee (or an admin, or hisho); an
AI task by hisho alone (a `system:` actor: the AI execution consumer).

A task waits for its step's dependencies: it is queued only once they are completed. A time
limit's timer names the attempt it is about, so it never touches a later one.

Error codes: task-not-pending, task-not-queued, task-not-running, task-not-failed,
task-not-completed, task-attempts-exhausted, task-finished, task-dependencies-unfinished,
task-attempt-over (409); task-not-assignee, task-system-only (403).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from pydantic import TypeAdapter

from domain.aggregate import Aggregate
from domain.errors import FORBIDDEN, DomainError
from domain.policies import retry_policy
from events.plan import PlanStep
from events.task import (
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskQueued,
    TaskReopened,
    TaskRetried,
    TaskStarted,
    TaskTimeLimitApproaching,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping
    from datetime import datetime

    from events import Actor

DEFAULT_MAX_ATTEMPTS = 3
_STEP: TypeAdapter[PlanStep] = TypeAdapter(PlanStep)
_KEPT = ("attempts", "revision", "feedback", "worker", "output", "error", "reason")  # as stored


class TaskError(DomainError):
    """A task command broke a task rule."""


class TaskStatus(StrEnum):
    """Where a task stands."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Task(Aggregate):
    """One plan step being carried out by a persona or a person."""

    aggregate_type = "task"

    def __init__(
        self,
        task_id: UUID,
        *,
        workflow_id: UUID,
        project_id: UUID,
        step: PlanStep,
        max_attempts: int,
        version: int = 0,
    ) -> None:
        super().__init__(task_id, version=version)
        self.workflow_id = workflow_id
        self.project_id = project_id
        self.step = step
        self.max_attempts = max_attempts
        self.status = TaskStatus.PENDING
        self.attempts = 0
        self.revision = 0
        self.feedback: str | None = None
        self.worker: str | None = None
        self.output: str | None = None
        self.error: str | None = None
        self.reason: str | None = None

    @classmethod
    def create(
        cls,
        *,
        task_id: UUID,
        workflow_id: UUID,
        project_id: UUID,
        step: PlanStep,
        at: datetime,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> Task:
        """Create a pending task from a plan step."""
        task = cls(
            task_id,
            workflow_id=workflow_id,
            project_id=project_id,
            step=step,
            max_attempts=max_attempts,
        )
        created = TaskCreated(
            task_id=task_id,
            workflow_id=workflow_id,
            project_id=project_id,
            step=step,
            max_attempts=max_attempts,
        )
        task._record(created, at=at)
        return task

    def queue(self, *, waiting_for: Collection[UUID] = (), at: datetime) -> None:
        """Queue a pending task whose dependencies (`waiting_for`: those unfinished) are done."""
        self._require(TaskStatus.PENDING, "task-not-pending")
        if waiting_for:
            waiting = ", ".join(sorted(map(str, waiting_for)))
            raise TaskError("task-dependencies-unfinished", f"task {self.id} waits for {waiting}")
        self._queue(at=at)

    def start(self, *, worker: str | None, by: Actor, at: datetime) -> None:
        """Begin an attempt at a queued task."""
        self.require_worker(by)
        self._require(TaskStatus.QUEUED, "task-not-queued")
        self.status = TaskStatus.RUNNING
        self.attempts += 1
        self.worker = worker
        started = TaskStarted(
            task_id=self.id,
            workflow_id=self.workflow_id,
            project_id=self.project_id,
            attempt=self.attempts,
            worker=worker,
        )
        self._record(started, at=at)

    def complete(self, *, output: str, by: Actor, at: datetime) -> None:
        """Finish a running task with its output."""
        self.require_worker(by)
        self._require(TaskStatus.RUNNING, "task-not-running")
        self.status = TaskStatus.COMPLETED
        self.output = output
        completed = TaskCompleted(
            task_id=self.id,
            workflow_id=self.workflow_id,
            project_id=self.project_id,
            attempt=self.attempts,
            output=output,
        )
        self._record(completed, at=at)

    def fail(self, *, error: str, by: Actor, at: datetime, attempt: int | None = None) -> None:
        """Record that the running attempt (`attempt`, if named) failed."""
        self.require_worker(by)
        self._require_attempt(attempt)
        self.status = TaskStatus.FAILED
        self.error = error
        failed = TaskFailed(
            task_id=self.id,
            workflow_id=self.workflow_id,
            project_id=self.project_id,
            attempt=self.attempts,
            error=error,
            retryable=self.can_retry,
        )
        self._record(failed, at=at)

    def warn_time_limit(self, *, attempt: int, at: datetime) -> None:
        """Record that the running `attempt` passed its step's soft time limit."""
        self._require_attempt(attempt)
        approaching = TaskTimeLimitApproaching(
            task_id=self.id,
            workflow_id=self.workflow_id,
            project_id=self.project_id,
            attempt=attempt,
            soft_limit=self.step.soft_limit,
            hard_limit=self.step.hard_limit,
        )
        self._record(approaching, at=at)

    @property
    def can_retry(self) -> bool:
        """Whether a failure leaves attempts to retry with."""
        return retry_policy(self.attempts, self.max_attempts)

    def retry(self, *, at: datetime) -> None:
        """Queue a failed task again if it has attempts left."""
        self._require(TaskStatus.FAILED, "task-not-failed")
        if not self.can_retry:
            raise TaskError(
                "task-attempts-exhausted",
                f"task {self.id} has used all {self.max_attempts} attempts",
            )
        retried = TaskRetried(
            task_id=self.id,
            workflow_id=self.workflow_id,
            project_id=self.project_id,
            attempt=self.attempts + 1,
        )
        self._record(retried, at=at)
        self._queue(at=at)

    def cancel(self, *, reason: str | None, at: datetime) -> None:
        """Cancel a task that has not completed."""
        if self.status in {TaskStatus.COMPLETED, TaskStatus.CANCELLED}:
            raise TaskError("task-finished", f"task {self.id} is already {self.status}")
        self.status = TaskStatus.CANCELLED
        self.reason = reason
        cancelled = TaskCancelled(
            task_id=self.id, workflow_id=self.workflow_id, project_id=self.project_id, reason=reason
        )
        self._record(cancelled, at=at)

    def reopen(self, *, feedback: str, at: datetime) -> None:
        """Send a completed task back to pending for revision; attempts start again."""
        self._require(TaskStatus.COMPLETED, "task-not-completed")
        self.status = TaskStatus.PENDING
        self.revision += 1
        self.attempts = 0
        self.feedback = feedback
        self.output = None
        self.error = None
        reopened = TaskReopened(
            task_id=self.id,
            workflow_id=self.workflow_id,
            project_id=self.project_id,
            revision=self.revision,
            feedback=feedback,
        )
        self._record(reopened, at=at)

    def require_worker(self, actor: Actor) -> None:
        """Refuse (403) whoever may not work this task: not its assignee, not hisho for AI."""
        if self.step.kind == "ai":
            if not actor.is_system:
                raise TaskError(
                    "task-system-only", "AI tasks are run by hisho alone", status=FORBIDDEN
                )
        elif not (actor.admin or actor.is_system or actor.principal == self.step.assignee):
            raise TaskError(
                "task-not-assignee",
                f"task {self.id} is assigned to {self.step.assignee}",
                status=FORBIDDEN,
            )

    def _queue(self, *, at: datetime) -> None:
        self.status = TaskStatus.QUEUED
        queued = TaskQueued(
            task_id=self.id,
            workflow_id=self.workflow_id,
            project_id=self.project_id,
            step=self.step,
            attempt=self.attempts + 1,
            feedback=self.feedback,
        )
        self._record(queued, at=at)

    def _require_attempt(self, attempt: int | None) -> None:
        self._require(TaskStatus.RUNNING, "task-not-running")
        if attempt is not None and attempt != self.attempts:
            raise TaskError("task-attempt-over", f"attempt {attempt} of task {self.id} is over")

    def _require(self, status: TaskStatus, code: str) -> None:
        if self.status is not status:
            raise TaskError(code, f"task {self.id} is {self.status}, not {status}")

    def to_state(self) -> dict[str, Any]:
        """The current state as a JSON-ready dict."""
        return {
            "id": str(self.id),
            "workflow_id": str(self.workflow_id),
            "project_id": str(self.project_id),
            "step": _STEP.dump_python(self.step, mode="json"),
            "kind": self.step.kind,
            "status": self.status.value,
            "max_attempts": self.max_attempts,
            **{name: getattr(self, name) for name in _KEPT},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, version: int) -> Self:
        """Rebuild a task from its stored state."""
        task = cls(
            UUID(state["id"]),
            workflow_id=UUID(state["workflow_id"]),
            project_id=UUID(state["project_id"]),
            step=_STEP.validate_python(state["step"]),
            max_attempts=state["max_attempts"],
            version=version,
        )
        task.status = TaskStatus(state["status"])
        for name in _KEPT:
            setattr(task, name, state[name])
        return task
