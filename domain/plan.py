"""Plan: draft -> submitted -> approved | rejected | expired, or withdrawn while open.

Approval is counted against the policy snapshot taken at submit (a later policy change does
not touch it): one vote per approver, only the snapshot's approvers vote, any rejection
rejects, quorum approves, and a plan small enough for the policy is approved at submit.
Votes are refused from the deadline on; `expire` is allowed from the deadline on.
The voter is the actor who sent the vote; an admin may vote on behalf of an approver (the
event names both). The plan records its submitter, and the one workflow started from it.

Error codes (status 409, a conflict with the state): plan-not-draft, plan-not-submitted,
plan-not-open, plan-duplicate-vote, plan-deadline-passed, plan-has-no-deadline,
plan-deadline-not-reached, plan-not-approved, plan-workflow-started; (status 422, input the
command cannot mean): plan-nothing-to-edit, plan-has-no-steps, plan-duplicate-step,
plan-unknown-dependency, plan-dependency-cycle;
(status 403, the actor may not): plan-not-an-approver, plan-vote-on-behalf-forbidden.
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from domain.aggregate import Aggregate, utc
from domain.errors import FORBIDDEN, UNPROCESSABLE, DomainError
from domain.plan_state import STEPS, PlanStatus, load_plan_state, plan_state
from domain.policies import (
    ApprovalOutcome,
    approval_policy,
    auto_approve_policy,
    deadline_policy,
    expiry_policy,
)
from events.plan import (
    PlanApprovalRecorded,
    PlanApproved,
    PlanDrafted,
    PlanEdited,
    PlanExpired,
    PlanRejected,
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


class PlanError(DomainError):
    """A plan command broke a plan rule."""


class Plan(Aggregate):
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
        self.auto_approved = False
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
        """Hand the draft in under `policy` (snapshot); small plans pass at once by policy."""
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
        if auto_approve_policy(policy, len(self.steps)):
            self.auto_approved = True
            self._approve(at=at)

    def approve(
        self, *, by: Actor, on_behalf_of: str | None, comment: str | None, at: datetime
    ) -> None:
        """Record one approver's approval; reaching the snapshot's quorum approves the plan."""
        approver = _voter(by, on_behalf_of)
        policy = self._vote_policy(approver, at=at)
        self.approvals = (*self.approvals, approver)
        recorded = PlanApprovalRecorded(
            plan_id=self.id,
            project_id=self.project_id,
            title=self.title,
            approver=approver,
            cast_by=by.principal,
            comment=comment,
            approvals=len(self.approvals),
            required_approvals=policy.required_approvals,
        )
        self._record(recorded, at=at)
        if approval_policy(policy, self.approvals, rejected=False) is ApprovalOutcome.APPROVED:
            self._approve(at=at)

    def reject(self, *, by: Actor, on_behalf_of: str | None, reason: str, at: datetime) -> None:
        """Reject the plan: one rejection by an approver rejects it, whatever the approvals."""
        approver = _voter(by, on_behalf_of)
        self._vote_policy(approver, at=at)
        self.status = PlanStatus.REJECTED
        self.rejected_by = approver
        self.reason = reason
        event = PlanRejected(
            plan_id=self.id,
            project_id=self.project_id,
            title=self.title,
            submitted_by=self.submitted_by,
            approver=approver,
            cast_by=by.principal,
            reason=reason,
        )
        self._record(event, at=at)

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

    def _approve(self, *, at: datetime) -> None:
        self.status = PlanStatus.APPROVED
        approved = PlanApproved(
            plan_id=self.id,
            project_id=self.project_id,
            title=self.title,
            submitted_by=self.submitted_by,
            approvers=self.approvals,
            auto=self.auto_approved,
        )
        self._record(approved, at=at)

    def _vote_policy(self, approver: str, *, at: datetime) -> ApprovalPolicy:
        self._require(PlanStatus.SUBMITTED, "plan-not-submitted")
        if self.policy is None:  # submit always sets it; this is a corrupt row
            raise AssertionError("a submitted plan has a policy snapshot")
        if approver not in self.policy.approvers:
            raise PlanError(
                "plan-not-an-approver", f"{approver!r} may not vote on this plan", status=FORBIDDEN
            )
        if approver in self.approvals:
            raise PlanError("plan-duplicate-vote", f"{approver!r} has already voted")
        if expiry_policy(self.deadline, utc(at)):
            raise PlanError("plan-deadline-passed", f"the deadline {self.deadline} has passed")
        return self.policy

    def _require(self, status: PlanStatus, code: str) -> None:
        if self.status is not status:
            raise PlanError(code, f"plan {self.id} is {self.status}, not {status}")

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


def _voter(by: Actor, on_behalf_of: str | None) -> str:
    """Who a vote counts for: its sender, or the approver an admin votes on behalf of."""
    if on_behalf_of is None or on_behalf_of == by.principal:
        return by.principal
    if not by.admin:
        raise PlanError(
            "plan-vote-on-behalf-forbidden",
            f"only an admin may vote on behalf of {on_behalf_of!r}",
            status=FORBIDDEN,
        )
    return on_behalf_of


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
