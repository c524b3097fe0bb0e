"""Workflow: planning -> execution -> review -> completed, review may send work back.

What the command processor does per workflow command (one transaction each):

- `StartWorkflow`: load the plan, call `Workflow.start(workflow_id=..., plan=plan, at=...)`,
  which returns the workflow AND one new `Task` per plan step; save all of them and append
  the pending events of the workflow first, then of each task (`WorkflowStarted`, then one
  `TaskCreated` per task). Task ids are derived, not generated: `task_id_for(workflow_id,
  step_id)` (UUIDv5), so a retried command derives the same ids.
- `BeginExecution`: `workflow.begin_execution(...)`; the processor queues, in the same
  transaction, the pending tasks whose dependencies are completed (`ready_tasks`: a step's
  `depends_on` names step ids, `task_id_for` maps them to the workflow's task ids). The
  workflow consumer (`consumers/workflow.py`) queues the others (`QueueTask`) as their
  dependencies complete.
- `BeginReview`: load the workflow's tasks and pass `{task_id: task.status}` to
  `workflow.begin_review(...)`; every task must be completed or cancelled.
- `RequestRevision`: `workflow.request_revision(...)` puts the workflow back in execution
  (at most `settings.max_revisions` times, from the plan); the chosen tasks are reopened and
  those whose dependencies are completed queued again, in the same transaction.
- `CompleteWorkflow`: `workflow.complete(...)` from review.
- `CancelWorkflow`: `workflow.cancel(...)`; unfinished tasks are then cancelled with
  `CancelTask` on `workflow.cancelled`.
- `FailWorkflow` (hisho's own): `workflow.fail(task=...)` once a task failed with no attempts
  left, if the plan's `settings.on_task_failure` is `fail`; its unfinished tasks are cancelled.

Phase moves are announced by `WorkflowPhaseChanged` (planning -> execution -> review),
`WorkflowRevisionRequested` (review -> execution), `WorkflowCompleted`, `WorkflowCancelled`
and `WorkflowFailed`.

Error codes (status 409): workflow-plan-not-approved, workflow-not-in-planning,
workflow-not-in-execution, workflow-not-in-review, workflow-tasks-unfinished,
workflow-revision-limit, workflow-finished, workflow-task-not-failed; (status 422):
workflow-tasks-unknown,
workflow-unknown-task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Self
from uuid import UUID, uuid5

from domain.aggregate import Aggregate
from domain.errors import UNPROCESSABLE, DomainError
from domain.plan_state import PlanStatus
from domain.policies import revision_policy
from domain.task import DEFAULT_MAX_ATTEMPTS, Task, TaskStatus
from events.workflow import (
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPhase,
    WorkflowPhaseChanged,
    WorkflowRevisionRequested,
    WorkflowStarted,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from domain.plan import Plan

DEFAULT_MAX_REVISIONS = 3
_DONE_FOR_REVIEW = frozenset({TaskStatus.COMPLETED, TaskStatus.CANCELLED})
_FINAL = frozenset({WorkflowPhase.COMPLETED, WorkflowPhase.CANCELLED, WorkflowPhase.FAILED})
OnTaskFailure = Literal["fail", "wait"]


class WorkflowError(DomainError):
    """A workflow command broke a workflow rule."""


def task_id_for(workflow_id: UUID, step_id: UUID) -> UUID:
    """The id of the task a workflow creates for a plan step (deterministic, UUIDv5)."""
    return uuid5(workflow_id, str(step_id))


def workflow_id_for(plan_id: UUID) -> UUID:
    """The id of the one workflow of a plan (deterministic, UUIDv5): a resend derives it again."""
    return uuid5(plan_id, "workflow")


def waiting_for(task: Task, statuses: Mapping[UUID, TaskStatus]) -> list[UUID]:
    """The task ids of `task`'s dependencies that are not completed yet."""
    needed = (task_id_for(task.workflow_id, step_id) for step_id in task.step.depends_on)
    return [task_id for task_id in needed if statuses.get(task_id) is not TaskStatus.COMPLETED]


def ready_tasks(tasks: Iterable[Task]) -> list[Task]:
    """The pending tasks of one workflow whose dependencies are all completed (in order)."""
    tasks = list(tasks)
    statuses = {task.id: task.status for task in tasks}
    return [t for t in tasks if t.status is TaskStatus.PENDING and not waiting_for(t, statuses)]


class Workflow(Aggregate):
    """An approved plan being carried out as tasks, through review, to completion."""

    aggregate_type = "workflow"

    def __init__(
        self,
        workflow_id: UUID,
        *,
        plan_id: UUID,
        project_id: UUID,
        task_ids: tuple[UUID, ...],
        max_revisions: int = DEFAULT_MAX_REVISIONS,
        on_task_failure: OnTaskFailure = "fail",
        version: int = 0,
    ) -> None:
        super().__init__(workflow_id, version=version)
        self.plan_id = plan_id
        self.project_id = project_id
        self.task_ids = task_ids
        self.max_revisions = max_revisions
        self.on_task_failure: OnTaskFailure = on_task_failure
        self.phase = WorkflowPhase.PLANNING
        self.revisions = 0
        self.reason: str | None = None

    @classmethod
    def start(
        cls,
        *,
        workflow_id: UUID,
        plan: Plan,
        at: datetime,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> tuple[Workflow, list[Task]]:
        """Start the one workflow of an approved plan; returns it and one new task per step.

        Its revision limit and failure policy are the plan's `settings`.
        """
        if plan.status is not PlanStatus.APPROVED:
            raise WorkflowError(
                "workflow-plan-not-approved", f"plan {plan.id} is {plan.status}, not approved"
            )
        plan.start_workflow(workflow_id, at=at)  # its one workflow: a second is refused
        tasks = _tasks_for(plan, workflow_id=workflow_id, max_attempts=max_attempts, at=at)
        task_ids = tuple(task.id for task in tasks)
        workflow = cls(
            workflow_id,
            plan_id=plan.id,
            project_id=plan.project_id,
            task_ids=task_ids,
            max_revisions=plan.settings.max_revisions,
            on_task_failure=plan.settings.on_task_failure,
        )
        started = WorkflowStarted(
            workflow_id=workflow_id, plan_id=plan.id, project_id=plan.project_id, task_ids=task_ids
        )
        workflow._record(started, at=at)
        return workflow, tasks

    def begin_execution(self, *, at: datetime) -> None:
        """Move from planning to execution."""
        self._move(WorkflowPhase.PLANNING, WorkflowPhase.EXECUTION, "workflow-not-in-planning", at)

    def begin_review(self, *, task_statuses: Mapping[UUID, TaskStatus], at: datetime) -> None:
        """Move from execution to review once every task is completed or cancelled."""
        self._require(WorkflowPhase.EXECUTION, "workflow-not-in-execution")
        if set(task_statuses) != set(self.task_ids):
            raise WorkflowError(
                "workflow-tasks-unknown",
                "statuses must cover exactly its tasks",
                status=UNPROCESSABLE,
            )
        unfinished = sorted(str(t) for t, s in task_statuses.items() if s not in _DONE_FOR_REVIEW)
        if unfinished:
            raise WorkflowError(
                "workflow-tasks-unfinished", f"tasks not done: {', '.join(unfinished)}"
            )
        self._move(WorkflowPhase.EXECUTION, WorkflowPhase.REVIEW, "workflow-not-in-execution", at)

    def request_revision(self, *, task_ids: Sequence[UUID], reason: str, at: datetime) -> None:
        """Send chosen tasks back: the workflow returns to execution and counts a revision."""
        self._require(WorkflowPhase.REVIEW, "workflow-not-in-review")
        chosen = tuple(task_ids)
        if not chosen or len(set(chosen)) != len(chosen) or not set(chosen) <= set(self.task_ids):
            raise WorkflowError(
                "workflow-unknown-task",
                "choose one or more distinct tasks of this workflow",
                status=UNPROCESSABLE,
            )
        if not revision_policy(self.revisions, self.max_revisions):
            raise WorkflowError(
                "workflow-revision-limit", f"already revised {self.revisions} times"
            )
        self.revisions += 1
        self.phase = WorkflowPhase.EXECUTION
        requested = WorkflowRevisionRequested(
            workflow_id=self.id,
            project_id=self.project_id,
            task_ids=chosen,
            reason=reason,
            revision=self.revisions,
        )
        self._record(requested, at=at)

    def complete(self, *, at: datetime) -> None:
        """Accept the reviewed work as done."""
        self._require(WorkflowPhase.REVIEW, "workflow-not-in-review")
        self.phase = WorkflowPhase.COMPLETED
        completed = WorkflowCompleted(
            workflow_id=self.id, project_id=self.project_id, revisions=self.revisions
        )
        self._record(completed, at=at)

    def fail(self, *, task: Task, reason: str, at: datetime) -> None:
        """Fail the workflow in execution because `task` failed with no attempts left."""
        self._require(WorkflowPhase.EXECUTION, "workflow-not-in-execution")
        if task.id not in self.task_ids:
            raise WorkflowError(
                "workflow-unknown-task",
                f"{task.id} is not a task of {self.id}",
                status=UNPROCESSABLE,
            )
        if task.status is not TaskStatus.FAILED or task.can_retry:
            raise WorkflowError(
                "workflow-task-not-failed", f"task {task.id} is {task.status}, not failed for good"
            )
        self.phase = WorkflowPhase.FAILED
        self.reason = reason
        failed = WorkflowFailed(
            workflow_id=self.id, project_id=self.project_id, task_id=task.id, reason=reason
        )
        self._record(failed, at=at)

    def cancel(self, *, reason: str | None, at: datetime) -> None:
        """Cancel a workflow that is not finished."""
        if self.phase in _FINAL:
            raise WorkflowError("workflow-finished", f"workflow {self.id} is {self.phase}")
        cancelled = WorkflowCancelled(
            workflow_id=self.id, project_id=self.project_id, from_phase=self.phase, reason=reason
        )
        self.phase = WorkflowPhase.CANCELLED
        self.reason = reason
        self._record(cancelled, at=at)

    def _move(self, source: WorkflowPhase, target: WorkflowPhase, code: str, at: datetime) -> None:
        self._require(source, code)
        self.phase = target
        changed = WorkflowPhaseChanged(
            workflow_id=self.id, project_id=self.project_id, from_phase=source, to_phase=target
        )
        self._record(changed, at=at)

    def _require(self, phase: WorkflowPhase, code: str) -> None:
        if self.phase is not phase:
            raise WorkflowError(code, f"workflow {self.id} is in {self.phase}, not {phase}")

    def to_state(self) -> dict[str, Any]:
        """The current state as a JSON-ready dict; `status` holds the phase."""
        return {
            "id": str(self.id),
            "plan_id": str(self.plan_id),
            "project_id": str(self.project_id),
            "task_ids": [str(task_id) for task_id in self.task_ids],
            "status": self.phase.value,
            "revisions": self.revisions,
            "max_revisions": self.max_revisions,
            "on_task_failure": self.on_task_failure,
            "reason": self.reason,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, version: int) -> Self:
        """Rebuild a workflow from its stored state."""
        workflow = cls(
            UUID(state["id"]),
            plan_id=UUID(state["plan_id"]),
            project_id=UUID(state["project_id"]),
            task_ids=tuple(UUID(task_id) for task_id in state["task_ids"]),
            max_revisions=state["max_revisions"],
            on_task_failure=state.get("on_task_failure", "fail"),  # absent: stored before it
            version=version,
        )
        workflow.phase = WorkflowPhase(state["status"])
        workflow.revisions = state["revisions"]
        workflow.reason = state["reason"]
        return workflow


def _tasks_for(plan: Plan, *, workflow_id: UUID, max_attempts: int, at: datetime) -> list[Task]:
    return [
        Task.create(
            task_id=task_id_for(workflow_id, step.step_id),
            workflow_id=workflow_id,
            project_id=plan.project_id,
            step=step,
            max_attempts=max_attempts,
            at=at,
        )
        for step in plan.steps
    ]
