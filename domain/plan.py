"""Plan: draft -> submitted -> approved | rejected | expired, or withdrawn while open.

Approval is counted against the policy snapshot taken at submit (a later policy change does
not touch it): `domain.approval` (requests, votes, reminders, ad-hoc approvers, the
project's auto-approval rule). `expire` is allowed from the deadline on. The plan records
its submitter, its settings, and the one workflow started from it.

Error codes (status 409, a conflict with the state): plan-not-draft, plan-not-submitted,
plan-not-open, plan-duplicate-vote, plan-deadline-passed, plan-has-no-deadline,
plan-deadline-not-reached, plan-not-approved, plan-workflow-started,
plan-already-an-approver; (status 422, input the command cannot mean): plan-nothing-to-edit,
plan-has-no-steps, plan-duplicate-step, plan-unknown-dependency, plan-dependency-cycle;
(status 403, the actor may not):
plan-not-an-approver, plan-vote-on-behalf-forbidden, plan-not-requester.
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from domain.aggregate import utc
from domain.approval import PlanApproval
from domain.errors import UNPROCESSABLE
from domain.plan_state import STEPS, PlanError, PlanStatus, load_plan_state, plan_state
from domain.policies import deadline_policy, expiry_policy
from events.plan import (
    PlanDrafted,
    PlanEdited,
    PlanExpired,
    PlanSettings,
    PlanStep,
    PlanSubmitted,
    PlanWithdrawn,
    PlanWorkflowStarted,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from events import Actor
    from events.project import ApprovalPolicy


class Plan(PlanApproval):
    """A plan of steps for a project, and the state of its approval."""

    aggregate_type = "plan"

    def __init__(
        self,
        plan_id: UUID,
        *,
        project_id: UUID,
        title: str,
        steps: tuple[PlanStep, ...],
        settings: PlanSettings | None = None,
        version: int = 0,
    ) -> None:
        super().__init__(plan_id, version=version)
        self.project_id = project_id
        self.title = title
        self.steps = steps
        self.settings = settings or PlanSettings()
        self.status = PlanStatus.DRAFT
        self.policy: ApprovalPolicy | None = None
        self.submitted_at: datetime | None = None
        self.deadline: datetime | None = None
        self.approvals: tuple[str, ...] = ()
        self.ad_hoc_approvers: tuple[str, ...] = ()
        self.approvals_requested = False
        self.auto_approved = False
        self.auto_rule: str | None = None
        self.rejected_by: str | None = None
        self.reason: str | None = None
        self.submitted_by: str | None = None
        self.workflow_id: UUID | None = None

    @classmethod
    def draft(
        cls,
        *,
        plan_id: UUID,
        project_id: UUID,
        title: str,
        steps: tuple[PlanStep, ...],
        settings: PlanSettings | None = None,
        at: datetime,
    ) -> Plan:
        """Start a plan in draft (`settings`: how its workflow runs; defaults if None)."""
        _check_steps(steps)
        plan = cls(plan_id, project_id=project_id, title=title, steps=steps, settings=settings)
        event = PlanDrafted(
            plan_id=plan_id, project_id=project_id, title=title, steps=steps, settings=plan.settings
        )
        plan._record(event, at=at)
        return plan

    def edit(
        self, *, title: str | None = None, steps: tuple[PlanStep, ...] | None = None, at: datetime
    ) -> None:
        """Change the title and/or steps of a draft (`None` leaves one as it is)."""
        self._require(PlanStatus.DRAFT, "plan-not-draft")
        if title is None and steps is None:
            raise PlanError(
                "plan-nothing-to-edit", "give a title, steps or both", status=UNPROCESSABLE
            )
        if steps is not None:
            _check_steps(steps)
            self.steps = steps
        self.title = self.title if title is None else title
        edited = PlanEdited(
            plan_id=self.id, project_id=self.project_id, title=self.title, steps=self.steps
        )
        self._record(edited, at=at)

    def submit(self, *, policy: ApprovalPolicy, by: Actor, at: datetime) -> None:
        """Hand the draft in under `policy` (its snapshot counts the votes).

        Approvals are asked for, and the project's auto-approval rule applied, by the
        approval consumer on `PlanSubmitted` (`domain.approval`).
        """
        self._require(PlanStatus.DRAFT, "plan-not-draft")
        if not self.steps:
            raise PlanError(
                "plan-has-no-steps",
                "a plan needs at least one step to be submitted",
                status=UNPROCESSABLE,
            )
        self.status = PlanStatus.SUBMITTED
        self.policy = policy
        self.submitted_at = utc(at)
        self.deadline = deadline_policy(policy, self.submitted_at)
        self.submitted_by = by.principal
        submitted = PlanSubmitted(
            plan_id=self.id,
            project_id=self.project_id,
            title=self.title,
            submitted_by=self.submitted_by,
            step_count=len(self.steps),
            policy=policy,
            deadline=self.deadline,
        )
        self._record(submitted, at=at)

    def expire(self, *, at: datetime) -> None:
        """Expire a submitted plan whose deadline has come."""
        self._require(PlanStatus.SUBMITTED, "plan-not-submitted")
        if self.deadline is None:
            raise PlanError("plan-has-no-deadline", f"plan {self.id} has no approval deadline")
        if not expiry_policy(self.deadline, utc(at)):
            raise PlanError("plan-deadline-not-reached", f"plan {self.id} is due {self.deadline}")
        self.status = PlanStatus.EXPIRED
        event = PlanExpired(
            plan_id=self.id,
            project_id=self.project_id,
            title=self.title,
            submitted_by=self.submitted_by,
            deadline=self.deadline,
        )
        self._record(event, at=at)

    def withdraw(self, *, reason: str | None, at: datetime) -> None:
        """Withdraw a draft or submitted plan."""
        if self.status not in {PlanStatus.DRAFT, PlanStatus.SUBMITTED}:
            raise PlanError("plan-not-open", f"plan {self.id} is {self.status}")
        self.status = PlanStatus.WITHDRAWN
        self.reason = reason
        event = PlanWithdrawn(
            plan_id=self.id, project_id=self.project_id, title=self.title, reason=reason
        )
        self._record(event, at=at)

    def start_workflow(self, workflow_id: UUID, *, at: datetime) -> None:
        """Record the one workflow of an approved plan; a second one is refused."""
        if self.workflow_id is not None:
            raise PlanError(
                "plan-workflow-started", f"plan {self.id} started workflow {self.workflow_id}"
            )
        self._require(PlanStatus.APPROVED, "plan-not-approved")
        self.workflow_id = workflow_id
        started = PlanWorkflowStarted(
            plan_id=self.id, project_id=self.project_id, title=self.title, workflow_id=workflow_id
        )
        self._record(started, at=at)

    def to_state(self) -> dict[str, Any]:
        """The current state as a JSON-ready dict."""
        return plan_state(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, version: int) -> Self:
        """Rebuild a plan from its stored state."""
        plan = cls(
            UUID(state["id"]),
            project_id=UUID(state["project_id"]),
            title=state["title"],
            steps=STEPS.validate_python(state["steps"]),
            version=version,
        )
        load_plan_state(plan, state)
        return plan


def _check_steps(steps: tuple[PlanStep, ...]) -> None:
    """Distinct step ids; every `depends_on` names a step of the plan, and no cycle."""
    ids = {step.step_id for step in steps}
    if len(ids) != len(steps):
        raise PlanError("plan-duplicate-step", "step ids must be distinct", status=UNPROCESSABLE)
    unknown = sorted(str(dep) for step in steps for dep in step.depends_on if dep not in ids)
    if unknown:
        raise PlanError(
            "plan-unknown-dependency", f"no such steps: {', '.join(unknown)}", status=UNPROCESSABLE
        )
    try:
        TopologicalSorter({step.step_id: step.depends_on for step in steps}).prepare()
    except CycleError as cycle:
        path = " -> ".join(str(step_id) for step_id in cycle.args[1])
        raise PlanError(
            "plan-dependency-cycle", f"steps depend on each other: {path}", status=UNPROCESSABLE
        ) from None
