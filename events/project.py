"""Project: owns workflows and holds the approval policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self
from uuid import UUID

from annotated_types import Gt, Le
from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.base import Command, DomainEvent
from events.catalog import catalog
from events.fields import Label, Principal

Deadline = Annotated[timedelta, Gt(timedelta(0)), Le(timedelta(days=365))]


class ApprovalPolicy(BaseModel):
    """Who approves a project's plans, how many must, and when small plans pass on their own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approvers: tuple[Principal, ...] = Field(min_length=1, max_length=50)
    required_approvals: int = Field(ge=1, le=50)
    auto_approve_max_steps: int = Field(default=0, ge=0, le=1_000)
    approval_deadline: Deadline | None = None

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


class ProjectCreated(DomainEvent):
    """A project was created."""

    project_id: UUID
    name: Label
    policy: ApprovalPolicy


class ApprovalPolicyChanged(DomainEvent):
    """A project's approval policy was replaced."""

    project_id: UUID
    policy: ApprovalPolicy


catalog.add(CreateProject, version=1)
catalog.add(ChangeApprovalPolicy, version=1)
catalog.add(ProjectCreated, version=1, routing_key="project.created")
catalog.add(ApprovalPolicyChanged, version=1, routing_key="project.approval_policy_changed")
