"""Base classes for every command and event, and the actor who caused them."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """The payload of a command or an event: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Command(Message):
    """Something someone asks hisho to do; named `VerbNoun`."""


class DomainEvent(Message):
    """Something that happened; named `NounVerbed`."""


class ActorKind(StrEnum):
    """Who can cause a message."""

    USER = "user"
    API_KEY = "api_key"
    PERSONA = "persona"
    SYSTEM = "system"


class Actor(BaseModel):
    """The authenticated principal behind a message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ActorKind
    id: str

    @classmethod
    def system(cls, name: str = "hisho") -> Actor:
        """An actor for work hisho does on its own (relay, scheduler, process managers)."""
        return cls(kind=ActorKind.SYSTEM, id=name)
