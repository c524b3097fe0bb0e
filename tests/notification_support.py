"""Sample events for every notification rule, and the state their recipients are read from.

One small world: project `PROJECT_ID` owned by OWEN with member MIA; plan `PLAN_ID` submitted
by SAM, asked of ANA, BO and (ad hoc) AL, with ANA's approval in; task `TASK_ID` a human
step assigned to HAL; workflow `WORKFLOW_ID` of that plan. `seed` writes it into a fake
database; `sample(type)` is an event of that type about it; `envelope` wraps one as the
processor writes it, caused by `actor`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from domain.plan import Plan
from domain.plan_state import PlanStatus
from domain.project import Project
from domain.task import Task
from domain.workflow import Workflow
from events import Actor, Envelope, Message
from events.plan import (
    AiStep,
    ApprovalReminderDue,
    ApprovalRequested,
    HumanStep,
    PlanApprovalRecorded,
    PlanApproved,
    PlanExpired,
    PlanRejected,
    PlanWithdrawn,
    PlanWorkflowStarted,
)
from events.project import ApprovalPolicy, ProjectMemberAdded, ProjectMemberRemoved
from events.task import TaskCancelled, TaskFailed, TaskQueued, TaskTimeLimitApproaching
from events.workflow import (
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPhase,
    WorkflowPhaseChanged,
)
from infra.db.outbox import event_envelope
from infra.message_context import MessageContext

if TYPE_CHECKING:
    from domain.aggregate import Aggregate
    from events import DomainEvent
    from tests.fakes import FakeDatabase

ANA, BO, AL, SAM, OWEN, MIA, HAL = (
    f"key:{name}" for name in ("ana", "bo", "al", "sam", "owen", "mia", "hal")
)
PROJECT_ID, PLAN_ID, TASK_ID, WORKFLOW_ID = (uuid.uuid4() for _ in range(4))
AT = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
DEADLINE = AT + timedelta(hours=10)
POLICY = ApprovalPolicy(approvers=(ANA, BO), required_approvals=2)
HUMAN = HumanStep(step_id=uuid.uuid4(), title="Write the brief", assignee=HAL, instructions="Do")
AI = AiStep(step_id=uuid.uuid4(), title="Draft", persona_id=uuid.uuid4(), input="Draft it")

# Who each rule's sample notifies in the world above (caused by a system actor).
RECIPIENTS: dict[str, tuple[str, ...]] = {
    "ApprovalRequested": (ANA,),
    "ApprovalReminderDue": (BO, AL),
    "PlanApprovalRecorded": (SAM,),
    "PlanApproved": (SAM,),
    "PlanRejected": (SAM,),
    "PlanExpired": (SAM,),
    "PlanWithdrawn": (BO, AL),
    "PlanWorkflowStarted": (SAM,),
    "TaskQueued": (HAL,),
    "TaskTimeLimitApproaching": (HAL,),
    "TaskCancelled": (HAL,),
    "TaskFailed": (OWEN,),
    "WorkflowPhaseChanged": (OWEN, MIA),
    "WorkflowCompleted": (OWEN, MIA),
    "WorkflowCancelled": (OWEN, MIA),
    "WorkflowFailed": (OWEN,),
    "ProjectMemberAdded": (MIA,),
    "ProjectMemberRemoved": (MIA,),
}


def world() -> list[Aggregate]:
    """The project, plan, task and workflow the samples are about."""
    project = Project(PROJECT_ID, name="Launch", policy=POLICY, owner=OWEN, members=(MIA,))
    plan = Plan(PLAN_ID, project_id=PROJECT_ID, title="Budget", steps=(HUMAN,))
    plan.status, plan.policy, plan.submitted_by = PlanStatus.SUBMITTED, POLICY, SAM
    plan.submitted_at, plan.deadline = AT, DEADLINE
    plan.ad_hoc_approvers, plan.approvals = (AL,), (ANA,)
    task = Task(TASK_ID, workflow_id=WORKFLOW_ID, project_id=PROJECT_ID, step=HUMAN, max_attempts=3)
    workflow = Workflow(WORKFLOW_ID, plan_id=PLAN_ID, project_id=PROJECT_ID, task_ids=(TASK_ID,))
    return [project, plan, task, workflow]


def seed(db: FakeDatabase) -> None:
    """Write the world into a fake database, as committed state."""
    for aggregate in world():
        db.states[(aggregate.aggregate_type, aggregate.id)] = (1, aggregate.to_state())


def sample(event_type: str, **changes: Any) -> DomainEvent:
    """An event of `event_type` about the world (`changes` replace fields)."""
    event: DomainEvent = _SAMPLES[event_type]()
    return event.model_copy(update=changes) if changes else event


def envelope(event: DomainEvent, actor: Actor | None = None) -> Envelope[Message]:
    """`event` in a fresh envelope, caused by `actor` (default: hisho's scheduler)."""
    context = MessageContext.start(actor or Actor.system("scheduler"))
    return event_envelope(
        event, aggregate_id=uuid.uuid4(), aggregate_version=1, context=context, clock=lambda: AT
    )


_PLAN: dict[str, Any] = {"plan_id": PLAN_ID, "project_id": PROJECT_ID, "title": "Budget"}
_TASK: dict[str, Any] = {"task_id": TASK_ID, "workflow_id": WORKFLOW_ID, "project_id": PROJECT_ID}
_WORKFLOW: dict[str, Any] = {"workflow_id": WORKFLOW_ID, "project_id": PROJECT_ID}
_VOTE: dict[str, Any] = {"approver": BO, "cast_by": BO, "submitted_by": SAM}
_SAMPLES: dict[str, Any] = {
    "ApprovalRequested": lambda: ApprovalRequested(
        **_PLAN, approver=ANA, requested_by=SAM, deadline=DEADLINE, ad_hoc=False
    ),
    "ApprovalReminderDue": lambda: ApprovalReminderDue(
        **_PLAN, pending=(BO, AL), deadline=DEADLINE, reminder=1
    ),
    "PlanApprovalRecorded": lambda: PlanApprovalRecorded(
        **_PLAN, approver=ANA, cast_by=ANA, comment=None, approvals=1, required_approvals=2
    ),
    "PlanApproved": lambda: PlanApproved(
        **_PLAN, submitted_by=SAM, approvers=(ANA, BO), auto=False
    ),
    "PlanRejected": lambda: PlanRejected(**_PLAN, **_VOTE, reason="Too dear"),
    "PlanExpired": lambda: PlanExpired(**_PLAN, submitted_by=SAM, deadline=DEADLINE),
    "PlanWithdrawn": lambda: PlanWithdrawn(**_PLAN, reason="Superseded"),
    "PlanWorkflowStarted": lambda: PlanWorkflowStarted(**_PLAN, workflow_id=WORKFLOW_ID),
    "TaskQueued": lambda: TaskQueued(**_TASK, step=HUMAN, attempt=1, feedback=None),
    "TaskTimeLimitApproaching": lambda: TaskTimeLimitApproaching(
        **_TASK, attempt=1, soft_limit=timedelta(minutes=25), hard_limit=timedelta(minutes=30)
    ),
    "TaskCancelled": lambda: TaskCancelled(**_TASK, reason=None),
    "TaskFailed": lambda: TaskFailed(**_TASK, attempt=3, error="Timed out", retryable=False),
    "WorkflowPhaseChanged": lambda: WorkflowPhaseChanged(
        **_WORKFLOW, from_phase=WorkflowPhase.EXECUTION, to_phase=WorkflowPhase.REVIEW
    ),
    "WorkflowCompleted": lambda: WorkflowCompleted(**_WORKFLOW, revisions=1),
    "WorkflowCancelled": lambda: WorkflowCancelled(
        **_WORKFLOW, from_phase=WorkflowPhase.EXECUTION, reason="Stopped"
    ),
    "WorkflowFailed": lambda: WorkflowFailed(**_WORKFLOW, task_id=TASK_ID, reason="Task failed"),
    "ProjectMemberAdded": lambda: ProjectMemberAdded(project_id=PROJECT_ID, member=MIA),
    "ProjectMemberRemoved": lambda: ProjectMemberRemoved(project_id=PROJECT_ID, member=MIA),
}
