"""Project: owns workflows, holds the approval policy plans are submitted under, has people.

The creator is the owner. Members (and the owner) work on the project's plans and
workflows; only the owner or an admin changes the policy or the members. hisho's own
components (a `system:` actor) act on every project. A project stored before owners
existed has none: only admins manage it.

Error codes: project-policy-unchanged, project-already-member, project-not-a-member (409);
project-owner-stays (422); project-not-owner, project-not-member (403).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from domain.aggregate import Aggregate
from domain.errors import FORBIDDEN, UNPROCESSABLE, DomainError
from events.project import (
    ApprovalPolicy,
    ApprovalPolicyChanged,
    ProjectCreated,
    ProjectMemberAdded,
    ProjectMemberRemoved,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from events import Actor


class ProjectError(DomainError):
    """A project command broke a project rule."""


class Project(Aggregate):
    """A project, its owner and members, and its current approval policy."""

    aggregate_type = "project"

    def __init__(
        self,
        project_id: UUID,
        *,
        name: str,
        policy: ApprovalPolicy,
        owner: str | None,
        members: tuple[str, ...] = (),
        version: int = 0,
    ) -> None:
        super().__init__(project_id, version=version)
        self.name = name
        self.policy = policy
        self.owner = owner
        self.members = members

    @classmethod
    def create(
        cls, *, project_id: UUID, name: str, policy: ApprovalPolicy, by: Actor, at: datetime
    ) -> Project:
        """Create a project owned by `by` with its approval policy."""
        owner = by.principal
        project = cls(project_id, name=name, policy=policy, owner=owner)
        created = ProjectCreated(project_id=project_id, name=name, owner=owner, policy=policy)
        project._record(created, at=at)
        return project

    def is_member(self, principal: str) -> bool:
        """Whether `principal` is the owner or a member."""
        return principal == self.owner or principal in self.members

    def require_member(self, actor: Actor) -> None:
        """Refuse (403) an actor who is neither a member, the owner, an admin nor hisho."""
        if not (actor.is_system or actor.admin or self.is_member(actor.principal)):
            raise ProjectError(
                "project-not-member",
                f"{actor.principal} is not a member of project {self.id}",
                status=FORBIDDEN,
            )

    def require_manager(self, actor: Actor) -> None:
        """Refuse (403) an actor who is neither the owner, an admin nor hisho."""
        if not (actor.is_system or actor.admin or actor.principal == self.owner):
            raise ProjectError(
                "project-not-owner",
                f"only the owner of project {self.id} or an admin may do this",
                status=FORBIDDEN,
            )

    def change_policy(self, policy: ApprovalPolicy, *, by: Actor, at: datetime) -> None:
        """Replace the approval policy (owner or admin); submitted plans keep their snapshot."""
        self.require_manager(by)
        if policy == self.policy:
            raise ProjectError("project-policy-unchanged", "the new policy equals the current one")
        self.policy = policy
        self._record(ApprovalPolicyChanged(project_id=self.id, policy=policy), at=at)

    def add_member(self, member: str, *, by: Actor, at: datetime) -> None:
        """Make `member` a member (owner or admin)."""
        self.require_manager(by)
        if self.is_member(member):
            raise ProjectError("project-already-member", f"{member} is a member already")
        self.members = (*self.members, member)
        self._record(ProjectMemberAdded(project_id=self.id, member=member), at=at)

    def remove_member(self, member: str, *, by: Actor, at: datetime) -> None:
        """Remove `member` (owner or admin); the owner cannot be removed."""
        self.require_manager(by)
        if member == self.owner:
            raise ProjectError(
                "project-owner-stays", "the owner is not removed", status=UNPROCESSABLE
            )
        if member not in self.members:
            raise ProjectError("project-not-a-member", f"{member} is not a member")
        self.members = tuple(name for name in self.members if name != member)
        self._record(ProjectMemberRemoved(project_id=self.id, member=member), at=at)

    def to_state(self) -> dict[str, Any]:
        """The current state as a JSON-ready dict."""
        return {
            "id": str(self.id),
            "name": self.name,
            "policy": self.policy.model_dump(mode="json"),
            "owner": self.owner,
            "members": list(self.members),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, version: int) -> Self:
        """Rebuild a project from its stored state (one stored before owners has none)."""
        return cls(
            UUID(state["id"]),
            name=state["name"],
            policy=ApprovalPolicy.model_validate(state["policy"]),
            owner=state.get("owner"),
            members=tuple(state.get("members", ())),
            version=version,
        )
