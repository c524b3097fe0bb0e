"""Persona: an AI secretary with a provider, a model, a system prompt and permissions."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from annotated_types import MaxLen, MinLen
from pydantic import Field

from events.base import Command, DomainEvent
from events.catalog import catalog
from events.fields import Label, Reason, Text

Permission = Annotated[str, MinLen(1), MaxLen(100)]
Permissions = Annotated[tuple[Permission, ...], MaxLen(100)]
PersonaField = Literal["name", "role", "provider", "model", "system_prompt", "permissions"]


class RegisterPersona(Command):
    """Register a new AI persona."""

    persona_id: UUID
    name: Label
    role: Label
    provider: Label
    model: Label
    system_prompt: Text
    permissions: Permissions = ()


class UpdatePersona(Command):
    """Change some of a persona's fields; fields left out (null) stay as they are."""

    persona_id: UUID
    name: Label | None = None
    role: Label | None = None
    provider: Label | None = None
    model: Label | None = None
    system_prompt: Text | None = None
    permissions: Permissions | None = None


class RetirePersona(Command):
    """Retire a persona: it takes no new work and cannot be changed again."""

    persona_id: UUID
    reason: Reason | None = None


class PersonaRegistered(DomainEvent):
    """A persona was registered."""

    persona_id: UUID
    name: Label
    role: Label
    provider: Label
    model: Label
    system_prompt: Text
    permissions: Permissions


class PersonaUpdated(DomainEvent):
    """A persona changed; carries its whole profile after the change and what changed."""

    persona_id: UUID
    changed: tuple[PersonaField, ...] = Field(min_length=1)
    name: Label
    role: Label
    provider: Label
    model: Label
    system_prompt: Text
    permissions: Permissions


class PersonaRetired(DomainEvent):
    """A persona was retired."""

    persona_id: UUID
    reason: Reason | None


catalog.add(RegisterPersona, version=1)
catalog.add(UpdatePersona, version=1)
catalog.add(RetirePersona, version=1)
catalog.add(PersonaRegistered, version=1, routing_key="persona.registered")
catalog.add(PersonaUpdated, version=1, routing_key="persona.updated")
catalog.add(PersonaRetired, version=1, routing_key="persona.retired")
