"""An in-memory people directory for unit tests (`infra.people.PersonDirectory`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from infra.people import Person

if TYPE_CHECKING:
    from infra.people import PersonDirectory

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def person(principal_id: str, **fields: Any) -> Person:
    """A person with a display name and the given fields (e.g. `email=`, `preferences=`)."""
    return Person.model_validate(
        {
            "principal_id": principal_id,
            "display_name": principal_id,
            "created_at": WHEN,
            "updated_at": WHEN,
            **fields,
        }
    )


class FakePersonDirectory:
    """People by principal id; `erase` forgets one, as the real directory's erasure does."""

    def __init__(self, *people: Person) -> None:
        self.people = {entry.principal_id: entry for entry in people}

    async def get(self, principal_id: str) -> Person | None:
        """The person with this principal id, or None."""
        return self.people.get(principal_id)

    def add(self, principal_id: str, **fields: Any) -> None:
        """Register a person (`person`'s fields)."""
        self.people[principal_id] = person(principal_id, **fields)

    def erase(self, principal_id: str) -> None:
        """Forget a person."""
        self.people.pop(principal_id, None)


def _conforms(fake: FakePersonDirectory) -> PersonDirectory:
    return fake  # mypy checks the fake against the port
