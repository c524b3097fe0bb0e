"""A submitted plan's approval: requests, votes, reminders, ad-hoc approvers, auto-approval.

`PlanApproval` is the part of `domain.plan.Plan` that counts votes against the policy
snapshot taken at submit. The approvers are the snapshot's, and the principals asked for
this plan only (`request_approval`, by the submitter, the project's owner or an admin). The
voter is the actor who sent the vote; an admin may vote on behalf of an approver (the
event names both). Any rejection rejects; quorum approves; the project's rule may approve
a plan on its own (`auto_approve`, decided by hisho's approval consumer). Votes are refused
from the deadline on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.aggregate import Aggregate, utc
from domain.errors import FORBIDDEN
from domain.plan_state import PlanError, PlanStatus
from domain.policies import ApprovalOutcome, approval_policy, expiry_policy
from events.plan import (
    ApprovalReminderDue,
    ApprovalRequested,
    PlanApprovalRecorded,
    PlanApproved,
    PlanRejected,
)

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from events import Actor
    from events.project import ApprovalPolicy


class PlanApproval(Aggregate):
    """The approval of a plan (see the module); `domain.plan.Plan` is the aggregate."""

    project_id: UUID
    title: str
    status: PlanStatus
    policy: ApprovalPolicy | None
    deadline: datetime | None
    submitted_by: str | None
    approvals: tuple[str, ...]
    ad_hoc_approvers: tuple[str, ...]
    approvals_requested: bool
    auto_approved: bool
    auto_rule: str | None
    rejected_by: str | None
    reason: str | None

    @property
    def approvers(self) -> tuple[str, ...]:
        """Who may vote: the snapshot's approvers, then the ad-hoc ones."""
        return (*(self.policy.approvers if self.policy else ()), *self.ad_hoc_approvers)

    def request_approvals(self, *, by: Actor, at: datetime) -> None:
        """Ask every approver of the snapshot to vote; once per plan (a repeat does nothing)."""
        self._require(PlanStatus.SUBMITTED, "plan-not-submitted")
        if self.approvals_requested:
            return
        self.approvals_requested = True
        for approver in self._snapshot().approvers:
            self._requested(approver, by=by, ad_hoc=False, at=at)

    def request_approval(
        self, approver: str, *, by: Actor, owner: str | None, at: datetime
    ) -> None:
        """Ask `approver` too, for this plan only (its submitter, `owner` or an admin may)."""
        self._require(PlanStatus.SUBMITTED, "plan-not-submitted")
        if not (by.admin or by.is_system or by.principal in {self.submitted_by, owner}):
            raise PlanError(
                "plan-not-requester",
                "only the plan's submitter, the project's owner or an admin asks for approvals",
                status=FORBIDDEN,
            )
        if approver in self.approvers:
            raise PlanError("plan-already-an-approver", f"{approver!r} approves this plan already")
        self.ad_hoc_approvers = (*self.ad_hoc_approvers, approver)
        self._requested(approver, by=by, ad_hoc=True, at=at)

    def remind(self, reminder: int, *, at: datetime) -> None:
        """Remind the approvers who have not voted; nothing once the plan is decided."""
        if self.status is not PlanStatus.SUBMITTED:
            return  # decided meanwhile: a reminder that fires late reminds nobody
        pending = tuple(name for name in self.approvers if name not in self.approvals)
        due = ApprovalReminderDue(
            plan_id=self.id,
            project_id=self.project_id,
            title=self.title,
            pending=pending,
            deadline=self.deadline,
            reminder=reminder,
        )
        self._record(due, at=at)

    def auto_approve(self, rule: str, *, at: datetime) -> None:
        """Approve the submitted plan by its project's rule (`rule` says which)."""
        self._require(PlanStatus.SUBMITTED, "plan-not-submitted")
        self.auto_approved, self.auto_rule = True, rule
        self._approve(at=at)

    def approve(
        self, *, by: Actor, on_behalf_of: str | None, comment: str | None, at: datetime
    ) -> None:
        """Record one approver's approval; reaching quorum approves the plan."""
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
        outcome = approval_policy(
            policy, self.approvals, rejected=False, ad_hoc=self.ad_hoc_approvers
        )
        if outcome is ApprovalOutcome.APPROVED:
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

    def _approve(self, *, at: datetime) -> None:
        self.status = PlanStatus.APPROVED
        approved = PlanApproved(
            plan_id=self.id,
            project_id=self.project_id,
            title=self.title,
            submitted_by=self.submitted_by,
            approvers=self.approvals,
            auto=self.auto_approved,
            rule=self.auto_rule,
        )
        self._record(approved, at=at)

    def _requested(self, approver: str, *, by: Actor, ad_hoc: bool, at: datetime) -> None:
        requested = ApprovalRequested(
            plan_id=self.id,
            project_id=self.project_id,
            title=self.title,
            approver=approver,
            requested_by=by.principal,
            deadline=self.deadline,
            ad_hoc=ad_hoc,
        )
        self._record(requested, at=at)

    def _snapshot(self) -> ApprovalPolicy:
        if self.policy is None:  # submit always sets it; this is a corrupt row
            raise AssertionError("a submitted plan has a policy snapshot")
        return self.policy

    def _vote_policy(self, approver: str, *, at: datetime) -> ApprovalPolicy:
        self._require(PlanStatus.SUBMITTED, "plan-not-submitted")
        policy = self._snapshot()
        if approver not in self.approvers:
            raise PlanError(
                "plan-not-an-approver", f"{approver!r} may not vote on this plan", status=FORBIDDEN
            )
        if approver in self.approvals:
            raise PlanError("plan-duplicate-vote", f"{approver!r} has already voted")
        if expiry_policy(self.deadline, utc(at)):
            raise PlanError("plan-deadline-passed", f"the deadline {self.deadline} has passed")
        return policy

    def _require(self, status: PlanStatus, code: str) -> None:
        if self.status is not status:
            raise PlanError(code, f"plan {self.id} is {self.status}, not {status}")


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
