"""Persona: an AI secretary that AI tasks run as; retired personas cannot change.

Error codes: persona-retired, persona-unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self, cast
from uuid import UUID

from domain.aggregate import Aggregate
from domain.errors import DomainError
from events.persona import PersonaField, PersonaRegistered, PersonaRetired, PersonaUpdated

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime


class PersonaError(DomainError):
    """A persona command broke a persona rule."""


class PersonaStatus(StrEnum):
    """Whether a persona takes work."""

    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class PersonaProfile:
    """What a persona is: the fields `RegisterPersona` sets and `UpdatePersona` changes."""

    name: str
    role: str
    provider: str
    model: str
    system_prompt: str
    permissions: tuple[str, ...]


class Persona(Aggregate):
    """An AI persona with its profile."""

    aggregate_type = "persona"

    def __init__(
        self,
        persona_id: UUID,
        *,
        profile: PersonaProfile,
        status: PersonaStatus = PersonaStatus.ACTIVE,
        version: int = 0,
    ) -> None:
        super().__init__(persona_id, version=version)
        self.profile = profile
        self.status = status

    @classmethod
    def register(cls, *, persona_id: UUID, profile: PersonaProfile, at: datetime) -> Persona:
        """Register a new persona."""
        persona = cls(persona_id, profile=profile)
        persona._record(PersonaRegistered(persona_id=persona_id, **asdict(profile)), at=at)
        return persona

    def update(
        self,
        *,
        at: datetime,
        name: str | None = None,
        role: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        system_prompt: str | None = None,
        permissions: tuple[str, ...] | None = None,
    ) -> None:
        """Change the profile fields given (`None` leaves a field as it is)."""
        if self.status is PersonaStatus.RETIRED:
            raise PersonaError("persona-retired", f"persona {self.id} is retired")
        old = self.profile
        updated = PersonaProfile(
            name=old.name if name is None else name,
            role=old.role if role is None else role,
            provider=old.provider if provider is None else provider,
            model=old.model if model is None else model,
            system_prompt=old.system_prompt if system_prompt is None else system_prompt,
            permissions=old.permissions if permissions is None else permissions,
        )
        changed = tuple(
            cast("PersonaField", f.name)
            for f in fields(PersonaProfile)
            if getattr(updated, f.name) != getattr(old, f.name)
        )
        if not changed:
            raise PersonaError("persona-unchanged", "the update changes nothing")
        self.profile = updated
        event = PersonaUpdated(persona_id=self.id, changed=changed, **asdict(updated))
        self._record(event, at=at)

    def retire(self, *, reason: str | None, at: datetime) -> None:
        """Retire the persona: it takes no new work and cannot change again."""
        if self.status is PersonaStatus.RETIRED:
            raise PersonaError("persona-retired", f"persona {self.id} is already retired")
        self.status = PersonaStatus.RETIRED
        self._record(PersonaRetired(persona_id=self.id, reason=reason), at=at)

    def to_state(self) -> dict[str, Any]:
        """The current state as a JSON-ready dict."""
        profile = asdict(self.profile)
        profile["permissions"] = list(self.profile.permissions)
        return {"id": str(self.id), "status": self.status.value, **profile}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, version: int) -> Self:
        """Rebuild a persona from its stored state."""
        profile = {f.name: state[f.name] for f in fields(PersonaProfile)}
        profile["permissions"] = tuple(profile["permissions"])
        return cls(
            UUID(state["id"]),
            profile=PersonaProfile(**profile),
            status=PersonaStatus(state["status"]),
            version=version,
        )
