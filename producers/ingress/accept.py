"""Accepting a command: idempotency, the envelope, the confirmed publish, the status marker.

Exactly-once in effect: a command id is what the processor's inbox deduplicates. With an
`Idempotency-Key` the id is derived from (caller, key), so every retry of one logical
request carries the same id, whether or not Redis remembers the key. Redis adds the fast
answers: `409` for a different body, and no second publish once one was confirmed. While
Redis is unavailable the store keeps the keys and markers in PostgreSQL instead
(`producers.ingress.fallback`); when both fail, the processor's record
(`command_status.body_sha256`) gives both answers once the first request is processed.

A request without a key gets one from the server (random) before it is published, and its
id is derived the same way. When the broker's confirm does not come the outcome is unknown
(`504`, naming the key): a retry with that key carries the same id and cannot create a
second command. A `503` is only given when the broker certainly did not take the command.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from events import Actor, Envelope, Message
from events.envelope import body_sha256
from infra.partitions import PARTITION_HEADER, envelope_slot
from infra.redis_store import Claim, RedisUnavailableError, quietly
from infra.telemetry import context_from_traceparent, current_traceparent
from producers.ingress.ports import (
    BrokerUnavailableError,
    OutgoingCommand,
    PublishOutcomeUnknownError,
)
from producers.ingress.problems import ProblemError, broker_unavailable, outcome_unknown

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from opentelemetry.trace import Tracer

    from events import CatalogEntry
    from producers.ingress.ports import CommandPublisher, CommandRecords, IngressStore

log = structlog.get_logger("hisho.ingress")

# Fixed forever: changing it would give retried requests new command ids.
IDEMPOTENCY_NAMESPACE = UUID("4f1c7d52-8a0e-5b7e-9c3a-6d2b1e0f9a41")
BODY_HASH_HEADER = "body-sha256"
_CommandEnvelope = Envelope[Message]  # built once: subscripting a generic model is not free


def command_id_for(caller: str, idempotency_key: str | None) -> UUID:
    """Return the id of a command: derived from (caller, key) when a key is given."""
    if idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{caller}\n{idempotency_key}")


@dataclass(frozen=True)
class CommandRequest:
    """A validated command and everything the HTTP request said about it."""

    entry: CatalogEntry
    data: Message
    actor: Actor
    caller: str
    idempotency_key: str | None
    correlation_id: UUID | None
    traceparent: str | None


@dataclass(frozen=True)
class _Attempt:
    """One publish of a command: its id, body hash, idempotency key and what the key held."""

    command_id: UUID
    digest: str
    key: str  # the client's Idempotency-Key, or the one the server assigned
    claim: Claim | None  # None: no claim was made (a server-assigned key, or no Redis)


@dataclass(frozen=True)
class AcceptedCommand:
    """What the ingress answers for an accepted command."""

    command_id: UUID
    replayed: bool


class CommandAcceptor:
    """Publishes commands with confirms, keeping idempotency and status markers in its store."""

    def __init__(
        self,
        *,
        publisher: CommandPublisher,
        store: IngressStore,
        records: CommandRecords,
        tracer: Tracer,
        clock: Callable[[], datetime],
        idempotency_ttl: int,
        accepted_ttl: int,
    ) -> None:
        self._publisher = publisher
        self._store = store
        self._records = records
        self._tracer = tracer
        self._clock = clock
        self._idempotency_ttl = idempotency_ttl
        self._accepted_ttl = accepted_ttl

    async def accept(self, request: CommandRequest) -> AcceptedCommand:
        """Publish `request` once, or raise a 409/503/504 problem; nothing else is written."""
        # Without a client key the server assigns one before publishing, so that an answer
        # of unknown outcome (504) can name a key whose retry carries the same command id.
        key = request.idempotency_key or str(uuid.uuid4())
        command_id = command_id_for(request.caller, key)
        digest = body_sha256(request.entry.type, request.data)
        claim = await self._claim(command_id, digest) if request.idempotency_key else None
        if claim is Claim.CONFLICT:
            raise ProblemError(
                409,
                "idempotency-conflict",
                "Idempotency-Key reused",
                "this Idempotency-Key was used with a different request body",
            )
        if claim is Claim.PUBLISHED:
            return AcceptedCommand(command_id, replayed=True)
        await self._publish(request, _Attempt(command_id, digest, key, claim))
        await quietly(
            self._store.record_accepted(
                command_id,
                request.entry.type,
                ttl=self._accepted_ttl,
                idempotent=request.idempotency_key is not None,
            )
        )
        return AcceptedCommand(command_id, replayed=claim is Claim.IN_FLIGHT)

    async def _publish(self, request: CommandRequest, attempt: _Attempt) -> None:
        # One span per command, a child of the caller's trace when it sent one; its context
        # travels in the envelope (not attached here: nothing else in this request traces).
        span = self._tracer.start_span(
            f"accept {request.entry.type}",
            context=context_from_traceparent(request.traceparent),
            kind=SpanKind.PRODUCER,
        )
        try:
            traceparent = current_traceparent(trace.set_span_in_context(span))
            await self._publisher.publish(
                self._outgoing(request, attempt.command_id, attempt.digest, traceparent)
            )
        except BrokerUnavailableError as exc:
            span.record_exception(exc)
            if attempt.claim is Claim.NEW:  # ours, and nothing was accepted: free the key
                await quietly(self._store.release(attempt.command_id))
            raise broker_unavailable(f"the broker did not confirm the command: {exc}") from exc
        except PublishOutcomeUnknownError as exc:
            span.record_exception(exc)
            await self._outcome_unknown(attempt, exc)
        finally:
            span.end()

    async def _outcome_unknown(self, attempt: _Attempt, exc: PublishOutcomeUnknownError) -> None:
        """Raise the 504; keep the key claimed, so a retry with another body is a 409.

        A claim of the client's key stays as it is (pending: a retry publishes again with
        the same id). A key the server assigned is claimed now, for the same reason.
        """
        log.warning("command outcome unknown", command_id=str(attempt.command_id), error=str(exc))
        if attempt.claim is None:
            try:
                ttl = self._idempotency_ttl
                await self._store.claim(attempt.command_id, attempt.digest, ttl=ttl)
            except RedisUnavailableError as failure:
                log.warning("redis unavailable", error=str(failure))
        raise outcome_unknown(
            f"the broker's confirm did not come: {exc}",
            command_id=attempt.command_id,
            idempotency_key=attempt.key,
        ) from exc

    async def _claim(self, command_id: UUID, digest: str) -> Claim | None:
        try:
            return await self._store.claim(command_id, digest, ttl=self._idempotency_ttl)
        except RedisUnavailableError as exc:
            log.warning("idempotency degraded: redis unavailable", error=str(exc))
        # The processor's record answers once it has one; until then, publish: the derived
        # id still makes the processor apply the command once.
        recorded = await self._records.body_sha256(command_id)
        if recorded is None:
            return None
        return Claim.PUBLISHED if recorded == digest else Claim.CONFLICT

    def _outgoing(
        self, request: CommandRequest, command_id: UUID, digest: str, traceparent: str | None
    ) -> OutgoingCommand:
        entry = request.entry
        envelope = _CommandEnvelope(
            id=command_id,
            type=entry.type,
            version=entry.version,
            occurred_at=self._clock(),
            correlation_id=request.correlation_id or command_id,
            causation_id=None,
            actor=request.actor,
            traceparent=traceparent,
            data=request.data,
        )
        headers: dict[str, Any] = {
            "type": entry.type,
            BODY_HASH_HEADER: digest,
            # The processor's partitions (infra.partitions): one aggregate, one partition.
            PARTITION_HEADER: envelope_slot(envelope),
        }
        if traceparent:
            headers["traceparent"] = traceparent
        return OutgoingCommand(
            routing_key=entry.routing_key,
            body=envelope.model_dump_json().encode(),
            message_id=str(command_id),
            type=entry.type,
            correlation_id=str(envelope.correlation_id),
            timestamp=envelope.occurred_at,
            headers=headers,
        )
