"""Workflow: runs an approved plan's tasks through planning, execution, review and completion."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from uuid import UUID

from annotated_types import MaxLen, MinLen
from pydantic import AfterValidator, Field

from events.base import Command, DomainEvent
from events.catalog import catalog
from events.fields import Reason
from events.upcasters import namespaced_v1, upcasters


class WorkflowPhase(StrEnum):
    """Where a workflow stands; `completed`, `cancelled` and `failed` are final."""

    PLANNING = "planning"
    EXECUTION = "execution"
    REVIEW = "review"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


def _distinct_ids(ids: tuple[UUID, ...]) -> tuple[UUID, ...]:
    if len(set(ids)) != len(ids):
        raise ValueError("task ids must be distinct")
    return ids


TaskIds = Annotated[tuple[UUID, ...], MaxLen(100), AfterValidator(_distinct_ids)]


class StartWorkflow(Command):
    """Start a workflow from an approved plan; one task is created per plan step."""

    workflow_id: UUID
    plan_id: UUID


class BeginExecution(Command):
    """Move a workflow from planning to execution: its tasks may now be queued."""

    workflow_id: UUID


class BeginReview(Command):
    """Move a workflow from execution to review once every task is completed or cancelled."""

    workflow_id: UUID


class RequestRevision(Command):
    """Send chosen tasks of a workflow in review back to execution."""

    workflow_id: UUID
    task_ids: Annotated[TaskIds, MinLen(1)]
    reason: Reason


class CompleteWorkflow(Command):
    """Accept a workflow in review as done."""

    workflow_id: UUID


class CancelWorkflow(Command):
    """Cancel a workflow that is not finished yet."""

    workflow_id: UUID
    reason: Reason | None = None


class FailWorkflow(Command):
    """Fail a workflow in execution whose task failed for good (hisho's own: system only)."""

    workflow_id: UUID
    task_id: UUID
    reason: Reason


class WorkflowStarted(DomainEvent):
    """A workflow started from an approved plan, in planning, with one task per step."""

    workflow_id: UUID
    plan_id: UUID
    project_id: UUID
    task_ids: Annotated[TaskIds, MinLen(1)]


class WorkflowPhaseChanged(DomainEvent):
    """A workflow moved forward: planning to execution, or execution to review."""

    workflow_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    from_phase: WorkflowPhase
    to_phase: WorkflowPhase


class WorkflowRevisionRequested(DomainEvent):
    """Review sent tasks back: the workflow is in execution again; `revision` counts rounds."""

    workflow_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    task_ids: Annotated[TaskIds, MinLen(1)]
    reason: Reason
    revision: int = Field(ge=1, le=1_000)


class WorkflowCompleted(DomainEvent):
    """A workflow was accepted as done after review."""

    workflow_id: UUID
    project_id: UUID
    revisions: int = Field(ge=0, le=1_000)


class WorkflowCancelled(DomainEvent):
    """A workflow was cancelled; its unfinished tasks should be cancelled too."""

    workflow_id: UUID
    project_id: UUID
    from_phase: WorkflowPhase
    reason: Reason | None


class WorkflowFailed(DomainEvent):
    """A task failed after its retries and the plan says so: the workflow failed (final)."""

    workflow_id: UUID
    project_id: UUID
    task_id: UUID
    reason: Reason


catalog.add(StartWorkflow, version=1)
catalog.add(BeginExecution, version=1)
catalog.add(BeginReview, version=1)
catalog.add(RequestRevision, version=1)
catalog.add(CompleteWorkflow, version=1)
catalog.add(CancelWorkflow, version=1)
catalog.add(FailWorkflow, version=1, system_only=True)
catalog.add(WorkflowStarted, version=1, routing_key="workflow.started")
catalog.add(WorkflowPhaseChanged, version=2, routing_key="workflow.phase_changed")
catalog.add(WorkflowRevisionRequested, version=2, routing_key="workflow.revision_requested")
catalog.add(WorkflowCompleted, version=1, routing_key="workflow.completed")
catalog.add(WorkflowCancelled, version=1, routing_key="workflow.cancelled")
catalog.add(WorkflowFailed, version=1, routing_key="workflow.failed")

namespaced_v1(upcasters, "WorkflowPhaseChanged", project_id=None)
namespaced_v1(upcasters, "WorkflowRevisionRequested", project_id=None)
