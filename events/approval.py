"""Approval commands: ask who votes on a submitted plan, remind them, approve by rule.

The approval consumer (`consumers/approval.py`) reacts to `PlanSubmitted`: it sends
`RequestApprovals` (one `ApprovalRequested` per approver), `AutoApprovePlan` when the
project's rule approves the plan on its own, and schedules the reminders (`RemindApprovers`
→ `ApprovalReminderDue`) and the deadline (`ExpirePlan`). Those commands are hisho's own
(system only); `RequestApproval` is a person's: the plan's submitter, the project's owner
or an admin asks a named principal, who then counts as an approver of that plan only.
The events they lead to are the plan's (`events.plan`: `ApprovalRequested`,
`ApprovalReminderDue`, `PlanApproved`).
"""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from events.base import Command
from events.catalog import catalog
from events.fields import Principal, Reason


class RequestApprovals(Command):
    """Ask every approver of a submitted plan's policy to vote (once per plan)."""

    plan_id: UUID


class RequestApproval(Command):
    """Ask one more principal to approve a submitted plan (an approver of this plan only)."""

    plan_id: UUID
    approver: Principal


class RemindApprovers(Command):
    """Remind the approvers who have not voted on a submitted plan yet."""

    plan_id: UUID
    reminder: int = Field(ge=1, le=10)  # which reminder of the plan's, in order


class AutoApprovePlan(Command):
    """Approve a submitted plan by its project's rule, which `rule` states."""

    plan_id: UUID
    rule: Reason


catalog.add(RequestApprovals, version=1, system_only=True)
catalog.add(RequestApproval, version=1)
catalog.add(RemindApprovers, version=1, system_only=True)
catalog.add(AutoApprovePlan, version=1, system_only=True)
