"""Project: owns workflows, holds the approval policy, has an owner and members.

The creator owns a project; only the owner or an admin changes its policy or members.
`ProjectCreated` v2 names the owner (null in an event upcast from v1).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self
from uuid import UUID

from annotated_types import Gt, Le
from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.base import Command, DomainEvent
from events.catalog import catalog
from events.fields import Label, Principal
from events.upcasters import namespaced_v1, upcasters

Deadline = Annotated[timedelta, Gt(timedelta(0)), Le(timedelta(days=365))]


class ApprovalPolicy(BaseModel):
    """Who approves a project's plans, how many must, and when small plans pass on their own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approvers: tuple[Principal, ...] = Field(min_length=1, max_length=50)
    required_approvals: int = Field(ge=1, le=50)
    auto_approve_max_steps: int = Field(default=0, ge=0, le=1_000)
    approval_deadline: Deadline | None = None
    # How long before the deadline approvers are reminded; None: at half-time and 1 h before.
    remind_before: tuple[Deadline, ...] | None = Field(default=None, max_length=10)

    @model_validator(mode="after")
    def _quorum_is_reachable(self) -> Self:
        if len(set(self.approvers)) != len(self.approvers):
            raise ValueError("approvers must be distinct")
        if self.required_approvals > len(self.approvers):
            raise ValueError("required_approvals exceeds the number of approvers")
        return self


class CreateProject(Command):
    """Create a project with its approval policy."""

    project_id: UUID
    name: Label
    policy: ApprovalPolicy


class ChangeApprovalPolicy(Command):
    """Replace a project's approval policy (plans already submitted keep their snapshot)."""

    project_id: UUID
    policy: ApprovalPolicy


class AddProjectMember(Command):
    """Make a principal a member of a project (its owner or an admin may)."""

    project_id: UUID
    member: Principal


class RemoveProjectMember(Command):
    """Remove a member from a project (its owner or an admin may; the owner stays)."""

    project_id: UUID
    member: Principal


class ProjectCreated(DomainEvent):
    """A project was created by its owner."""

    project_id: UUID
    name: Label
    owner: Principal | None  # null only in an event upcast from v1
    policy: ApprovalPolicy


class ApprovalPolicyChanged(DomainEvent):
    """A project's approval policy was replaced."""

    project_id: UUID
    policy: ApprovalPolicy


class ProjectMemberAdded(DomainEvent):
    """A principal became a member of a project."""

    project_id: UUID
    member: Principal


class ProjectMemberRemoved(DomainEvent):
    """A principal stopped being a member of a project."""

    project_id: UUID
    member: Principal


catalog.add(CreateProject, version=2)
catalog.add(ChangeApprovalPolicy, version=2)
catalog.add(AddProjectMember, version=1)
catalog.add(RemoveProjectMember, version=1)
catalog.add(ProjectCreated, version=2, routing_key="project.created")
catalog.add(ApprovalPolicyChanged, version=2, routing_key="project.approval_policy_changed")
catalog.add(ProjectMemberAdded, version=1, routing_key="project.member_added")
catalog.add(ProjectMemberRemoved, version=1, routing_key="project.member_removed")

for _type in ("CreateProject", "ChangeApprovalPolicy", "ApprovalPolicyChanged"):
    namespaced_v1(upcasters, _type)
namespaced_v1(upcasters, "ProjectCreated", owner=None)
