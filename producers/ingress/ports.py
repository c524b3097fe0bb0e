"""What the ingress needs from its adapters, with the types they exchange.

The adapters: `producers.ingress.publisher` (AMQP, on the process's confirmed publisher),
`infra.auth` (keys), `infra.redis_store` and `producers.ingress.fallback` (short-lived state),
`infra.db.ingress_fallback` (the same in PostgreSQL), `producers.ingress.status` (records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from infra.auth import ApiKey
    from infra.redis_store import Claim


class BrokerUnavailableError(Exception):
    """The broker certainly did not take a command: it was not accepted (503)."""


class PublishOutcomeUnknownError(Exception):
    """A command was (or may have been) sent, but no confirm came: maybe accepted (504)."""


@dataclass(frozen=True)
class OutgoingCommand:
    """One command message as it goes on the wire."""

    routing_key: str
    body: bytes
    message_id: str
    type: str
    correlation_id: str
    timestamp: datetime
    headers: dict[str, Any] = field(default_factory=dict)


class CommandPublisher(Protocol):
    """Publishes a command and returns only once the broker confirmed it."""

    @property
    def ready(self) -> bool:
        """Whether a publish can be attempted now."""
        ...

    async def start(self, *, wait: float = 0.0) -> None:
        """Begin connecting; wait up to `wait` seconds for the connection."""

    async def publish(self, command: OutgoingCommand) -> None:
        """Publish with a confirm; raise `BrokerUnavailableError` or `PublishOutcomeUnknownError`.

        The first: not taken (the ingress answers 503). The second: sent, no confirm (504).
        """


class KeyStore(Protocol):
    """Finds the API key a presented token belongs to."""

    async def authenticate(self, token: str) -> ApiKey | None:
        """Return the active key of `token`, else None."""
        ...


class CommandRecords(Protocol):
    """The processor's record of commands (PostgreSQL), as idempotency needs it."""

    async def body_sha256(self, command_id: UUID) -> str | None:
        """The body hash the recorded command had; None if none is recorded (or readable)."""
        ...


class IngressStore(Protocol):
    """Short-lived ingress state; every method may raise `RedisUnavailableError`."""

    async def ping(self) -> None:
        """Raise unless the store answers."""

    async def claim(self, command_id: UUID, body_hash: str, *, ttl: int) -> Claim:
        """Claim an idempotency record or report what it holds."""
        ...

    async def release(self, command_id: UUID) -> None:
        """Forget an idempotency record whose publish failed."""

    async def record_accepted(
        self, command_id: UUID, command_type: str, *, ttl: int, idempotent: bool
    ) -> None:
        """Mark a confirmed command accepted."""

    async def accepted_type(self, command_id: UUID) -> str | None:
        """Return the type of an accepted command, or None."""
        ...

    async def count_hits(self, bucket: str, hits: int, *, window: int, index: int) -> int:
        """Add `hits` to window `index` of `bucket`; return the window's total."""
        ...

    async def aclose(self) -> None:
        """Release connections."""


class IngressFallback(Protocol):
    """Where idempotency records and accepted markers go while Redis cannot answer.

    Every method may raise `FallbackUnavailableError`.
    """

    async def claim(self, command_id: UUID, body_hash: str, *, ttl: int) -> Claim:
        """Claim an idempotency record, or report what it (or the processor's record) holds."""
        ...

    async def held(self, command_id: UUID, body_hash: str) -> Claim | None:
        """What a live record stands for with this body; None when there is none."""
        ...

    async def release(self, command_id: UUID) -> None:
        """Forget an idempotency record whose publish failed."""

    async def record_accepted(
        self, command_id: UUID, command_type: str, *, ttl: int, idempotent: bool
    ) -> None:
        """Mark a confirmed command accepted."""

    async def accepted_type(self, command_id: UUID) -> str | None:
        """Return the type of an accepted command, or None."""
        ...

    async def holds_live_rows(self) -> bool:
        """Whether anything unexpired is kept (that Redis may not know)."""
        ...
