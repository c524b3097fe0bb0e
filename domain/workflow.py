"""Workflow: planning -> execution -> review -> completed, review may send work back.

What the command processor does per workflow command (one transaction each):

- `StartWorkflow`: load the plan, call `Workflow.start(workflow_id=..., plan=plan, at=...)`,
  which returns the workflow AND one new `Task` per plan step; save all of them and append
  the pending events of the workflow first, then of each task (`WorkflowStarted`, then one
  `TaskCreated` per task). Task ids are derived, not generated: `task_id_for(workflow_id,
  step_id)` (UUIDv5), so a retried command derives the same ids.
- `BeginExecution`: `workflow.begin_execution(...)`; the tasks are then queued with
  `QueueTask` (a process manager reacting to `workflow.phase_changed` with `to_phase ==
  execution`), or the processor queues the pending tasks in the same transaction.
- `BeginReview`: load the workflow's tasks and pass `{task_id: task.status}` to
  `workflow.begin_review(...)`; every task must be completed or cancelled.
- `RequestRevision`: `workflow.request_revision(...)` puts the workflow back in execution;
  each chosen task is then reopened (`ReopenTask` with the reason as feedback, on
  `workflow.revision_requested`) and queued again.
- `CompleteWorkflow`: `workflow.complete(...)` from review.
- `CancelWorkflow`: `workflow.cancel(...)`; unfinished tasks are then cancelled with
  `CancelTask` on `workflow.cancelled`.

Phase moves are announced by `WorkflowPhaseChanged` (planning -> execution -> review),
`WorkflowRevisionRequested` (review -> execution), `WorkflowCompleted` and `WorkflowCancelled`.

Error codes (status 409): workflow-plan-not-approved, workflow-not-in-planning,
workflow-not-in-execution, workflow-not-in-review, workflow-tasks-unfinished,
workflow-revision-limit, workflow-finished; (status 422): workflow-tasks-unknown,
workflow-unknown-task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self
from uuid import UUID, uuid5

from domain.aggregate import Aggregate
from domain.errors import UNPROCESSABLE, DomainError
from domain.plan_state import PlanStatus
from domain.policies import revision_policy
from domain.task import DEFAULT_MAX_ATTEMPTS, Task, TaskStatus
from events.workflow import (
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowPhase,
    WorkflowPhaseChanged,
    WorkflowRevisionRequested,
    WorkflowStarted,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from domain.plan import Plan

DEFAULT_MAX_REVISIONS = 3
_DONE_FOR_REVIEW = frozenset({TaskStatus.COMPLETED, TaskStatus.CANCELLED})
_FINAL = frozenset({WorkflowPhase.COMPLETED, WorkflowPhase.CANCELLED})


class WorkflowError(DomainError):
    """A workflow command broke a workflow rule."""


def task_id_for(workflow_id: UUID, step_id: UUID) -> UUID:
    """The id of the task a workflow creates for a plan step (deterministic, UUIDv5)."""
    return uuid5(workflow_id, str(step_id))


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
        version: int = 0,
    ) -> None:
        super().__init__(workflow_id, version=version)
        self.plan_id = plan_id
        self.project_id = project_id
        self.task_ids = task_ids
        self.max_revisions = max_revisions
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
        max_revisions: int = DEFAULT_MAX_REVISIONS,
    ) -> tuple[Workflow, list[Task]]:
        """Start the one workflow of an approved plan; returns it and one new task per step."""
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
            max_revisions=max_revisions,
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
