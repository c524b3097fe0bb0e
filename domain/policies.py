"""Pure policy functions: approval quorum, auto-approval, deadlines, retries and revisions."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from events.project import ApprovalPolicy


class ApprovalOutcome(StrEnum):
    """Where a submitted plan's approval stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


def approval_policy(
    policy: ApprovalPolicy, approvals: Collection[str], *, rejected: bool
) -> ApprovalOutcome:
    """Any rejection rejects; else distinct approvals by the policy's approvers reach quorum."""
    if rejected:
        return ApprovalOutcome.REJECTED
    counted = set(approvals) & set(policy.approvers)
    if len(counted) >= policy.required_approvals:
        return ApprovalOutcome.APPROVED
    return ApprovalOutcome.PENDING


def auto_approve_policy(policy: ApprovalPolicy, step_count: int) -> bool:
    """A plan with at least one step and at most `auto_approve_max_steps` passes at submit."""
    return 1 <= step_count <= policy.auto_approve_max_steps


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
