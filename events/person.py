"""Person: a change to the people directory, recorded without the personal data itself.

The directory (display name, contact points, preferences) is a mutable table outside the
log, so it can be erased; these events carry the person's principal id and, for an update,
only the names of the fields that changed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.base import DomainEvent
from events.catalog import catalog
from events.fields import Principal

PersonField = Literal["display_name", "email", "chat_webhook_url", "preferences"]


class PersonRegistered(DomainEvent):
    """A person was added to the directory."""

    principal_id: Principal


class PersonUpdated(DomainEvent):
    """A person's directory entry changed; names the fields, never their values."""

    principal_id: Principal
    changed: tuple[PersonField, ...] = Field(min_length=1)


class PersonErased(DomainEvent):
    """A person's directory entry was deleted (their personal data is gone)."""

    principal_id: Principal


catalog.add(PersonRegistered, version=1, routing_key="person.registered")
catalog.add(PersonUpdated, version=1, routing_key="person.updated")
catalog.add(PersonErased, version=1, routing_key="person.erased")
