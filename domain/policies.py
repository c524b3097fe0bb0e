"""Pure policy functions: quorum, auto-approval, deadlines, reminders, retries, revisions."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime

    from events.project import ApprovalPolicy


class ApprovalOutcome(StrEnum):
    """Where a submitted plan's approval stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


def approval_policy(
    policy: ApprovalPolicy,
    approvals: Collection[str],
    *,
    rejected: bool,
    ad_hoc: Collection[str] = (),
) -> ApprovalOutcome:
    """Any rejection rejects; else distinct approvals by the approvers reach quorum.

    The approvers are the policy's and the plan's ad-hoc ones (asked for this plan only).
    """
    if rejected:
        return ApprovalOutcome.REJECTED
    counted = set(approvals) & (set(policy.approvers) | set(ad_hoc))
    if len(counted) >= policy.required_approvals:
        return ApprovalOutcome.APPROVED
    return ApprovalOutcome.PENDING


def auto_approve_policy(policy: ApprovalPolicy, step_count: int) -> bool:
    """A plan with at least one step and at most `auto_approve_max_steps` passes at submit."""
    return 1 <= step_count <= policy.auto_approve_max_steps


def auto_approve_rule(policy: ApprovalPolicy, step_count: int) -> str | None:
    """The rule that approves a submitted plan on its own, said as recorded; None if none."""
    if not auto_approve_policy(policy, step_count):
        return None
    limit = policy.auto_approve_max_steps
    return f"auto_approve_max_steps: {step_count} step(s), at most {limit} pass on their own"


DEFAULT_LAST_REMINDER = timedelta(hours=1)  # before the deadline


def reminder_policy(
    submitted_at: datetime, deadline: datetime | None, remind_before: Sequence[timedelta] | None
) -> list[datetime]:
    """When the approvers of a plan are reminded, in order (none without a deadline).

    `remind_before` (the policy's): that long before the deadline, each; None: the default,
    at half-time and one hour before. Only times strictly between submit and deadline count.
    """
    if deadline is None:
        return []
    if remind_before is None:
        times = {submitted_at + (deadline - submitted_at) / 2, deadline - DEFAULT_LAST_REMINDER}
    else:
        times = {deadline - before for before in remind_before}
    return sorted(at for at in times if submitted_at < at < deadline)


def deadline_policy(policy: ApprovalPolicy, submitted_at: datetime) -> datetime | None:
    """When a plan submitted at `submitted_at` expires, if the policy sets a deadline."""
    if policy.approval_deadline is None:
        return None
    return submitted_at + policy.approval_deadline


def expiry_policy(deadline: datetime | None, now: datetime) -> bool:
    """Whether a deadline has passed at `now` (a plan with no deadline never expires)."""
    return deadline is not None and now >= deadline


def retry_policy(attempts: int, max_attempts: int) -> bool:
    """Whether a failed task that has run `attempts` times may be queued again."""
    return attempts < max_attempts


def revision_policy(revisions: int, max_revisions: int) -> bool:
    """Whether a workflow that went through `revisions` review rounds may have another."""
    return revisions < max_revisions
