"""Scopes a credential can hold, and the principal an authenticated request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from events import Actor


class Scope(StrEnum):
    """What a credential may do; `admin` implies every other scope."""

    COMMANDS_WRITE = "commands:write"
    STATE_READ = "state:read"
    EVENTS_READ = "events:read"
    ADMIN = "admin"


def parse_scopes(values: str | list[str] | tuple[str, ...]) -> frozenset[Scope]:
    """Scopes from a space-separated string or a list; unknown names are ignored."""
    names = values.split() if isinstance(values, str) else values
    known = {scope.value for scope in Scope}
    return frozenset(Scope(name) for name in names if name in known)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the actor written into envelopes, and what it may do."""

    actor: Actor
    scopes: frozenset[Scope]

    @property
    def caller(self) -> str:
        """The caller's principal id (keys idempotency and rate limits)."""
        return self.actor.principal

    def allows(self, scope: Scope) -> bool:
        """Whether this principal holds `scope` (directly or through `admin`)."""
        return scope in self.scopes or Scope.ADMIN in self.scopes
