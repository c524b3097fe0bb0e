"""Project: owns workflows and holds the approval policy plans are submitted under.

Error codes: project-policy-unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from domain.aggregate import Aggregate
from domain.errors import DomainError
from events.project import ApprovalPolicy, ApprovalPolicyChanged, ProjectCreated

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime


class ProjectError(DomainError):
    """A project command broke a project rule."""


class Project(Aggregate):
    """A project and its current approval policy."""

    aggregate_type = "project"

    def __init__(
        self, project_id: UUID, *, name: str, policy: ApprovalPolicy, version: int = 0
    ) -> None:
        super().__init__(project_id, version=version)
        self.name = name
        self.policy = policy

    @classmethod
    def create(
        cls, *, project_id: UUID, name: str, policy: ApprovalPolicy, at: datetime
    ) -> Project:
        """Create a project with its approval policy."""
        project = cls(project_id, name=name, policy=policy)
        project._record(ProjectCreated(project_id=project_id, name=name, policy=policy), at=at)
        return project

    def change_policy(self, policy: ApprovalPolicy, *, at: datetime) -> None:
        """Replace the approval policy; plans already submitted keep their snapshot."""
        if policy == self.policy:
            raise ProjectError("project-policy-unchanged", "the new policy equals the current one")
        self.policy = policy
        self._record(ApprovalPolicyChanged(project_id=self.id, policy=policy), at=at)

    def to_state(self) -> dict[str, Any]:
        """The current state as a JSON-ready dict."""
        return {
            "id": str(self.id),
            "name": self.name,
            "policy": self.policy.model_dump(mode="json"),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, version: int) -> Self:
        """Rebuild a project from its stored state."""
        return cls(
            UUID(state["id"]),
            name=state["name"],
            policy=ApprovalPolicy.model_validate(state["policy"]),
            version=version,
        )
