"""Plan: drafted, submitted for approval, then approved, rejected, expired or withdrawn."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from annotated_types import MaxLen
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from events.base import Command, DomainEvent
from events.catalog import catalog
from events.fields import Label, Principal, Reason, Text
from events.project import ApprovalPolicy


class AiStep(BaseModel):
    """A step a persona carries out: its provider answers `input` under its system prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["ai"] = "ai"
    step_id: UUID
    title: Label
    persona_id: UUID
    input: Text


class HumanStep(BaseModel):
    """A step a person carries out and completes by command with an output."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["human"] = "human"
    step_id: UUID
    title: Label
    assignee: Principal
    instructions: Text


def _distinct_step_ids(steps: tuple[PlanStep, ...]) -> tuple[PlanStep, ...]:
    if len({step.step_id for step in steps}) != len(steps):
        raise ValueError("step ids must be distinct")
    return steps


PlanStep = Annotated[AiStep | HumanStep, Field(discriminator="kind")]
Steps = Annotated[tuple[PlanStep, ...], MaxLen(100), AfterValidator(_distinct_step_ids)]


class DraftPlan(Command):
    """Start a plan for a project, in draft."""

    plan_id: UUID
    project_id: UUID
    title: Label
    steps: Steps = ()


class EditPlan(Command):
    """Change a draft plan's title and/or steps; fields left out (null) stay as they are."""

    plan_id: UUID
    title: Label | None = None
    steps: Steps | None = None


class SubmitPlan(Command):
    """Hand a draft plan in for approval under its project's current policy."""

    plan_id: UUID


class ApprovePlan(Command):
    """Record one approver's approval of a submitted plan."""

    plan_id: UUID
    approver: Principal
    comment: Reason | None = None


class RejectPlan(Command):
    """Reject a submitted plan; one rejection by an approver rejects it."""

    plan_id: UUID
    approver: Principal
    reason: Reason


class ExpirePlan(Command):
    """Expire a submitted plan whose approval deadline has passed (sent by the scheduler)."""

    plan_id: UUID


class WithdrawPlan(Command):
    """Withdraw a draft or submitted plan."""

    plan_id: UUID
    reason: Reason | None = None


class PlanDrafted(DomainEvent):
    """A plan was drafted."""

    plan_id: UUID
    project_id: UUID
    title: Label
    steps: Steps


class PlanEdited(DomainEvent):
    """A draft plan changed; carries its whole title and steps after the change."""

    plan_id: UUID
    title: Label
    steps: Steps


class PlanSubmitted(DomainEvent):
    """A draft plan was handed in; `policy` is the snapshot its approval is counted against."""

    plan_id: UUID
    project_id: UUID
    step_count: int = Field(ge=1, le=100)
    policy: ApprovalPolicy
    deadline: AwareDatetime | None


class PlanApprovalRecorded(DomainEvent):
    """One approver approved; `approvals` counts the distinct approvals so far."""

    plan_id: UUID
    approver: Principal
    comment: Reason | None
    approvals: int = Field(ge=1, le=50)
    required_approvals: int = Field(ge=1, le=50)


class PlanApproved(DomainEvent):
    """A plan reached its quorum, or was auto-approved by policy at submit (`auto`)."""

    plan_id: UUID
    project_id: UUID
    approvers: tuple[Principal, ...] = Field(max_length=50)
    auto: bool


class PlanRejected(DomainEvent):
    """An approver rejected a submitted plan."""

    plan_id: UUID
    project_id: UUID
    approver: Principal
    reason: Reason


class PlanExpired(DomainEvent):
    """A submitted plan reached its approval deadline undecided."""

    plan_id: UUID
    project_id: UUID
    deadline: AwareDatetime


class PlanWithdrawn(DomainEvent):
    """A draft or submitted plan was withdrawn."""

    plan_id: UUID
    project_id: UUID
    reason: Reason | None


catalog.add(DraftPlan, version=1)
catalog.add(EditPlan, version=1)
catalog.add(SubmitPlan, version=1)
catalog.add(ApprovePlan, version=1)
catalog.add(RejectPlan, version=1)
catalog.add(ExpirePlan, version=1)
catalog.add(WithdrawPlan, version=1)
catalog.add(PlanDrafted, version=1, routing_key="plan.drafted")
catalog.add(PlanEdited, version=1, routing_key="plan.edited")
catalog.add(PlanSubmitted, version=1, routing_key="plan.submitted")
catalog.add(PlanApprovalRecorded, version=1, routing_key="plan.approval_recorded")
catalog.add(PlanApproved, version=1, routing_key="plan.approved")
catalog.add(PlanRejected, version=1, routing_key="plan.rejected")
catalog.add(PlanExpired, version=1, routing_key="plan.expired")
catalog.add(PlanWithdrawn, version=1, routing_key="plan.withdrawn")
