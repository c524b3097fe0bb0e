"""Project: owns workflows and holds the approval policy."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from events.base import Command, DomainEvent
from events.catalog import catalog


class ApprovalPolicy(BaseModel):
    """Who approves a project's plans, how many must, and when small plans pass on their own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approvers: tuple[str, ...] = Field(min_length=1)
    required_approvals: int = Field(ge=1)
    auto_approve_max_steps: int = Field(default=0, ge=0)
    approval_deadline: timedelta | None = None


class CreateProject(Command):
    """Create a project with its approval policy."""

    project_id: UUID
    name: str = Field(min_length=1, max_length=200)
    policy: ApprovalPolicy


class ChangeApprovalPolicy(Command):
    """Replace a project's approval policy (plans already submitted keep their snapshot)."""

    project_id: UUID
    policy: ApprovalPolicy


class ProjectCreated(DomainEvent):
    """A project was created."""

    project_id: UUID
    name: str
    policy: ApprovalPolicy


class ApprovalPolicyChanged(DomainEvent):
    """A project's approval policy was replaced."""

    project_id: UUID
    policy: ApprovalPolicy


catalog.add(CreateProject, version=1)
catalog.add(ChangeApprovalPolicy, version=1)
catalog.add(ProjectCreated, version=1, routing_key="project.created")
catalog.add(ApprovalPolicyChanged, version=1, routing_key="project.approval_policy_changed")
