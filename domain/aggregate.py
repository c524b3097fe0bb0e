"""What every aggregate shares: identity, a version, and the events it recorded but not saved.

Aggregates are stored as one row of current state (`to_state()`) with a version column; they
are not event-sourced. `version` counts every event the aggregate has recorded in its life, so
the n-th event of an aggregate carries `aggregate_version == n`. A repository saves an aggregate
with `UPDATE ... WHERE version = persisted_version` and appends `pull_events()` to the outbox in
the same transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from events import DomainEvent


@dataclass(frozen=True)
class RecordedEvent:
    """A domain event an aggregate recorded, with its place in that aggregate's history."""

    event: DomainEvent
    aggregate_type: str
    aggregate_id: UUID
    aggregate_version: int
    occurred_at: datetime


class Aggregate(ABC):
    """Base of every aggregate: `id`, `version` and the pending events a unit of work drains."""

    aggregate_type: ClassVar[str]

    def __init__(self, aggregate_id: UUID, *, version: int = 0) -> None:
        self.id = aggregate_id
        self.version = version
        self.persisted_version = version
        self._pending: list[RecordedEvent] = []

    @property
    def pending_events(self) -> tuple[RecordedEvent, ...]:
        """Events recorded since the aggregate was loaded (or last drained), oldest first."""
        return tuple(self._pending)

    def pull_events(self) -> list[RecordedEvent]:
        """Drain the pending events; the aggregate now counts as saved at its `version`."""
        drained, self._pending = self._pending, []
        self.persisted_version = self.version
        return drained

    @abstractmethod
    def to_state(self) -> dict[str, Any]:
        """The current state as a JSON-ready dict (the `state` column); includes `id`."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: Mapping[str, Any], *, version: int) -> Self:
        """Rebuild an aggregate from `to_state()` output and its stored version."""

    def _record(self, event: DomainEvent, *, at: datetime) -> None:
        self.version += 1
        self._pending.append(
            RecordedEvent(
                event=event,
                aggregate_type=self.aggregate_type,
                aggregate_id=self.id,
                aggregate_version=self.version,
                occurred_at=utc(at),
            )
        )


def utc(at: datetime) -> datetime:
    """`at` in UTC; a naive datetime is a programming error, not a domain rule."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("domain times must be timezone-aware")
    return at.astimezone(UTC)


def dump_time(at: datetime | None) -> str | None:
    """A time as ISO 8601 text for the state column."""
    return None if at is None else at.isoformat()


def load_time(text: str | None) -> datetime | None:
    """A time read back from the state column."""
    return None if text is None else datetime.fromisoformat(text)
