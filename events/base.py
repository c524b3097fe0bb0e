"""Base classes for every command and event, and the actor who caused them."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


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


# The namespace of each kind's principal ids (`events.fields.PrincipalId`).
NAMESPACES = {
    ActorKind.USER: "user",  # user:<issuer>/<sub>
    ActorKind.API_KEY: "key",  # key:<key id>
    ActorKind.PERSONA: "persona",  # persona:<persona id>
    ActorKind.SYSTEM: "system",  # system:<component>
}
_KINDS = {namespace: kind for kind, namespace in NAMESPACES.items()}


class Actor(BaseModel):
    """The authenticated principal behind a message.

    `principal` is its one id everywhere else (approver lists, votes, assignees, people):
    `<namespace>:<id>`. `admin` says the credential held the admin scope when it sent the
    message (the domain lets an admin act on behalf of others).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ActorKind
    id: str
    admin: bool = Field(default=False, exclude_if=lambda admin: not admin)  # absent unless set

    @property
    def principal(self) -> str:
        """The namespaced principal id: `key:…`, `user:<issuer>/<sub>`, `persona:…`, `system:…`."""
        return f"{NAMESPACES[self.kind]}:{self.id}"

    @property
    def is_system(self) -> bool:
        """Whether hisho itself sent the message (its components, through the outbox)."""
        return self.kind is ActorKind.SYSTEM

    @classmethod
    def of(cls, principal: str, *, admin: bool = False) -> Actor:
        """The actor of a principal id (`ValueError` for an unknown namespace)."""
        namespace, _, ident = principal.partition(":")
        if namespace not in _KINDS or not ident:
            raise ValueError(f"{principal!r} is not a principal id (namespace:id)")
        return cls(kind=_KINDS[namespace], id=ident, admin=admin)

    @classmethod
    def system(cls, name: str = "hisho") -> Actor:
        """An actor for work hisho does on its own (relay, scheduler, process managers)."""
        return cls(kind=ActorKind.SYSTEM, id=name)
