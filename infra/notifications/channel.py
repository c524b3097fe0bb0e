"""The one protocol of an external notification channel, and how a channel fails.

A channel sends one notification to one person, keyed by the notification id (the
idempotency key the other side may deduplicate on). It reads the contact point from the
person it is handed (the people directory, at delivery time) and never logs it. It fails in
one of two ways, which decide what the consumer framework does:

- `ChannelUnavailable` (a `ConnectionError`, so transient): refused connection, timeout,
  SMTP 4xx, HTTP 408/429/5xx. Tried again along the consumer's delay ladder, then parked.
- `ChannelRefused` (not transient: poison, parked at once): no contact point, an SMTP 5xx,
  an HTTP 4xx, an address the SSRF guard refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from uuid import UUID

    from infra.people import Person


@dataclass(frozen=True)
class Delivery:
    """One notification as a channel sends it (no contact point: the person has it)."""

    notification_id: UUID
    priority: str
    subject: str
    body: str

    @property
    def key(self) -> str:
        """The idempotency key: the notification id."""
        return str(self.notification_id)


class ChannelUnavailable(ConnectionError):  # noqa: N818  (reads as what happened)
    """The channel could not take the message now; trying again later may succeed."""


class ChannelRefused(Exception):  # noqa: N818
    """The channel refused the message for good; trying again will not help."""


class Channel(Protocol):
    """Sends a notification to a person over one external channel."""

    async def send(self, delivery: Delivery, person: Person) -> None:
        """Send it (at least once, keyed by `delivery.key`); raise to say why not."""
        ...
