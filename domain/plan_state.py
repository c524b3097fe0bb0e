"""A plan's status, its error, its stored state and how `Plan.to_state`/`from_state` keep it."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from pydantic import TypeAdapter

from domain.aggregate import dump_time, load_time
from domain.errors import DomainError
from events.plan import PlanSettings, PlanStep
from events.project import ApprovalPolicy

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

STEPS: TypeAdapter[tuple[PlanStep, ...]] = TypeAdapter(tuple[PlanStep, ...])


class PlanError(DomainError):
    """A plan command broke a plan rule."""


class PlanStatus(StrEnum):
    """Where a plan stands; all but `draft` and `submitted` are final."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class StoredPlan(Protocol):
    """What of a plan (`domain.plan.Plan`) its stored state holds."""

    id: UUID
    project_id: UUID
    title: str
    steps: tuple[PlanStep, ...]
    status: PlanStatus
    policy: ApprovalPolicy | None
    submitted_at: datetime | None
    deadline: datetime | None
    approvals: tuple[str, ...]
    auto_approved: bool
    rejected_by: str | None
    reason: str | None
    submitted_by: str | None
    workflow_id: UUID | None
    settings: PlanSettings
    ad_hoc_approvers: tuple[str, ...]
    approvals_requested: bool
    auto_rule: str | None


def plan_state(plan: StoredPlan) -> dict[str, Any]:
    """The plan's state as a JSON-ready dict."""
    return {
        "id": str(plan.id),
        "project_id": str(plan.project_id),
        "title": plan.title,
        "steps": STEPS.dump_python(plan.steps, mode="json"),
        "status": plan.status.value,
        "policy": None if plan.policy is None else plan.policy.model_dump(mode="json"),
        "submitted_at": dump_time(plan.submitted_at),
        "deadline": dump_time(plan.deadline),
        "approvals": list(plan.approvals),
        "auto_approved": plan.auto_approved,
        "rejected_by": plan.rejected_by,
        "reason": plan.reason,
        "submitted_by": plan.submitted_by,
        "workflow_id": None if plan.workflow_id is None else str(plan.workflow_id),
        "settings": plan.settings.model_dump(mode="json"),
        "ad_hoc_approvers": list(plan.ad_hoc_approvers),
        "approvals_requested": plan.approvals_requested,
        "auto_rule": plan.auto_rule,
    }


def load_plan_state(plan: StoredPlan, state: Mapping[str, Any]) -> None:
    """Set what `plan_state` stored beyond the constructor's fields on `plan`."""
    plan.status = PlanStatus(state["status"])
    policy = state["policy"]
    plan.policy = None if policy is None else ApprovalPolicy.model_validate(policy)
    plan.submitted_at = load_time(state["submitted_at"])
    plan.deadline = load_time(state["deadline"])
    plan.approvals = tuple(state["approvals"])
    plan.auto_approved = state["auto_approved"]
    plan.rejected_by = state["rejected_by"]
    plan.reason = state["reason"]
    plan.submitted_by = state.get("submitted_by")  # absent in a row stored before it
    workflow_id = state.get("workflow_id")
    plan.workflow_id = None if workflow_id is None else UUID(workflow_id)
    plan.settings = PlanSettings.model_validate(state.get("settings", {}))  # absent: defaults
    plan.ad_hoc_approvers = tuple(state.get("ad_hoc_approvers", ()))
    plan.approvals_requested = state.get("approvals_requested", False)
    plan.auto_rule = state.get("auto_rule")
