"""Plan: drafted, submitted for approval, then approved, rejected, expired or withdrawn.

Version 2 of the plan events carries the plan's project and title on every event and its
submitter on the decisions, so a subscriber filters and renders without reading state; a
v1 event reads as v2 with those fields null and its principals namespaced (`legacy:`).
A vote's voter is the authenticated actor (`ApprovePlan`/`RejectPlan` v2); an admin may vote
`on_behalf_of` an approver, and the recorded vote names both (`approver`, `cast_by`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Self
from uuid import UUID

from annotated_types import Gt, Le, MaxLen
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from events.base import Command, DomainEvent
from events.catalog import catalog
from events.fields import Label, Principal, Reason, Text
from events.project import ApprovalPolicy
from events.upcasters import Payload, legacy_principal, namespaced_v1, upcasters

SOFT_LIMIT = timedelta(minutes=25)  # a running attempt is warned about after this
HARD_LIMIT = timedelta(minutes=30)  # and failed after this
TimeLimit = Annotated[timedelta, Gt(timedelta(0)), Le(timedelta(days=7))]


class _Step(BaseModel):
    """What every step has: its id, title, the steps it waits for, and its time limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step_id: UUID
    title: Label
    depends_on: tuple[UUID, ...] = Field(default=(), max_length=100)
    soft_limit: TimeLimit = SOFT_LIMIT
    hard_limit: TimeLimit = HARD_LIMIT

    @model_validator(mode="after")
    def _soft_before_hard(self) -> Self:
        if self.soft_limit >= self.hard_limit:
            raise ValueError("soft_limit must be shorter than hard_limit")
        if self.step_id in self.depends_on:
            raise ValueError("a step cannot depend on itself")
        return self


class AiStep(_Step):
    """A step a persona carries out: its provider answers `input` under its system prompt."""

    kind: Literal["ai"] = "ai"
    persona_id: UUID
    input: Text


class HumanStep(_Step):
    """A step a person carries out and completes by command with an output."""

    kind: Literal["human"] = "human"
    assignee: Principal
    instructions: Text


class PlanSettings(BaseModel):
    """How the plan's workflow runs: what a failed task does, how many review rounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on_task_failure: Literal["fail", "wait"] = "fail"  # fail the workflow, or wait for people
    max_revisions: int = Field(default=3, ge=0, le=20)


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
    settings: PlanSettings = PlanSettings()


class EditPlan(Command):
    """Change a draft plan's title and/or steps; fields left out (null) stay as they are."""

    plan_id: UUID
    title: Label | None = None
    steps: Steps | None = None


class SubmitPlan(Command):
    """Hand a draft plan in for approval under its project's current policy."""

    plan_id: UUID


class ApprovePlan(Command):
    """Approve a submitted plan as the caller, or as an admin `on_behalf_of` an approver."""

    plan_id: UUID
    on_behalf_of: Principal | None = None
    comment: Reason | None = None


class RejectPlan(Command):
    """Reject a submitted plan (as `ApprovePlan` votes); one rejection rejects it."""

    plan_id: UUID
    on_behalf_of: Principal | None = None
    reason: Reason


class ExpirePlan(Command):
    """Expire a submitted plan whose approval deadline has passed (hisho's own: system only)."""

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
    settings: PlanSettings = PlanSettings()  # absent in an event upcast from v1: the defaults


class PlanEdited(DomainEvent):
    """A draft plan changed; carries its whole title and steps after the change."""

    plan_id: UUID
    project_id: UUID | None  # null only in an event upcast from v1
    title: Label
    steps: Steps


class PlanSubmitted(DomainEvent):
    """A draft plan was handed in; `policy` is the snapshot its approval is counted against."""

    plan_id: UUID
    project_id: UUID
    title: Label | None  # null only in an event upcast from v1 (likewise below)
    submitted_by: Principal | None
    step_count: int = Field(ge=1, le=100)
    policy: ApprovalPolicy
    deadline: AwareDatetime | None


class PlanApprovalRecorded(DomainEvent):
    """One approver approved; `approvals` counts the distinct approvals so far.

    `cast_by` sent the vote: the approver, or an admin on the approver's behalf.
    """

    plan_id: UUID
    project_id: UUID | None
    title: Label | None
    approver: Principal
    cast_by: Principal | None
    comment: Reason | None
    approvals: int = Field(ge=1, le=50)
    required_approvals: int = Field(ge=1, le=50)


class PlanApproved(DomainEvent):
    """A plan reached its quorum, or its project's rule approved it on its own (`auto`).

    `rule` states that rule (`AutoApprovePlan`, decided by `system:approval`).
    """

    plan_id: UUID
    project_id: UUID
    title: Label | None
    submitted_by: Principal | None
    approvers: tuple[Principal, ...] = Field(max_length=150)
    auto: bool
    rule: Reason | None = None


class PlanRejected(DomainEvent):
    """An approver rejected a submitted plan (`cast_by`: as for an approval)."""

    plan_id: UUID
    project_id: UUID
    title: Label | None
    submitted_by: Principal | None
    approver: Principal
    cast_by: Principal | None
    reason: Reason


class PlanExpired(DomainEvent):
    """A submitted plan reached its approval deadline undecided."""

    plan_id: UUID
    project_id: UUID
    title: Label | None
    submitted_by: Principal | None
    deadline: AwareDatetime


class PlanWithdrawn(DomainEvent):
    """A draft or submitted plan was withdrawn."""

    plan_id: UUID
    project_id: UUID
    title: Label | None
    reason: Reason | None


class ApprovalRequested(DomainEvent):
    """An approver was asked to vote on a plan (`ad_hoc`: asked for this plan only)."""

    plan_id: UUID
    project_id: UUID
    title: Label
    approver: Principal
    requested_by: Principal
    deadline: AwareDatetime | None
    ad_hoc: bool


class ApprovalReminderDue(DomainEvent):
    """The approvers in `pending` have not voted on a plan whose deadline comes."""

    plan_id: UUID
    project_id: UUID
    title: Label
    pending: tuple[Principal, ...] = Field(max_length=100)
    deadline: AwareDatetime | None
    reminder: int = Field(ge=1, le=10)


class PlanWorkflowStarted(DomainEvent):
    """An approved plan's one workflow started (a plan starts at most one)."""

    plan_id: UUID
    project_id: UUID
    title: Label
    workflow_id: UUID


catalog.add(DraftPlan, version=2)
catalog.add(EditPlan, version=2)
catalog.add(SubmitPlan, version=1)
catalog.add(ApprovePlan, version=2)
catalog.add(RejectPlan, version=2)
catalog.add(ExpirePlan, version=1, system_only=True)
catalog.add(WithdrawPlan, version=1)
catalog.add(PlanDrafted, version=2, routing_key="plan.drafted")
catalog.add(PlanEdited, version=2, routing_key="plan.edited")
catalog.add(PlanSubmitted, version=2, routing_key="plan.submitted")
catalog.add(PlanApprovalRecorded, version=2, routing_key="plan.approval_recorded")
catalog.add(PlanApproved, version=2, routing_key="plan.approved")
catalog.add(PlanRejected, version=2, routing_key="plan.rejected")
catalog.add(PlanExpired, version=2, routing_key="plan.expired")
catalog.add(PlanWithdrawn, version=2, routing_key="plan.withdrawn")
catalog.add(PlanWorkflowStarted, version=1, routing_key="plan.workflow_started")
catalog.add(ApprovalRequested, version=1, routing_key="plan.approval_requested")
catalog.add(ApprovalReminderDue, version=1, routing_key="plan.approval_reminder_due")

for _type in ("DraftPlan", "EditPlan", "PlanDrafted"):
    namespaced_v1(upcasters, _type)
namespaced_v1(upcasters, "PlanEdited", project_id=None)
namespaced_v1(upcasters, "PlanSubmitted", title=None, submitted_by=None)
namespaced_v1(upcasters, "PlanApprovalRecorded", project_id=None, title=None, cast_by=None)
namespaced_v1(upcasters, "PlanApproved", title=None, submitted_by=None)
namespaced_v1(upcasters, "PlanRejected", title=None, submitted_by=None, cast_by=None)
namespaced_v1(upcasters, "PlanExpired", title=None, submitted_by=None)
namespaced_v1(upcasters, "PlanWithdrawn", title=None)


@upcasters.register("ApprovePlan", 1)
@upcasters.register("RejectPlan", 1)
def _vote_v1(payload: Payload) -> Payload:
    """A v1 vote named its voter: it reads as cast on the voter's behalf (admins only)."""
    vote = dict(payload)
    approver = vote.pop("approver", None)
    vote["on_behalf_of"] = None if approver is None else legacy_principal(approver)
    return vote
