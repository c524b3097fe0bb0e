"""One message through one consumer: trace, inbox claim, handler, commit; holds when ordered.

The layers, one concern each (the retry → delay → parking layer wraps them all:
`infra.consumers.runtime`):

1. **trace**: a CONSUMER span continuing the envelope's `traceparent`;
2. **unit + inbox**: a fresh unit of work; the inbox claim keyed by the consumer's name (a
   duplicate, whether the claim or the commit finds it, is acknowledged and changes nothing);
   the handler for the message's type; the commit (state, inbox, outbox, extra rows at once);
3. **refusal**: a `DomainError` from the handler or the commit is an answer, not a failure:
   nothing of the handler is kept, and the consumer's `on_reject` records the refusal with
   the inbox claim in a fresh unit (a redelivery does not decide again);
4. **order** (ordered consumers): the commit checks that no earlier message of the same key is
   held (`hold_guard`); if one is, the message is held behind it (`infra.consumers.held`) and
   acknowledged. After a message that was held or parked is applied, the messages held behind
   it are applied in order.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace

from domain.errors import DomainError
from events import ContractError, InvalidMessageError, catalog
from events.catalog import partition_key
from infra.consumers.declaration import Parked
from infra.consumers.held import HeldMessage
from infra.consumers.parking import parked_row
from infra.consumers.runtime import (
    PARKED_CONSUMER_HEADER,
    RuntimePolicy,
    Settlement,
    call_with_retries,
    is_retryable,
    settlement_for,
)
from infra.db.parked_tables import PARKED_MESSAGES
from infra.db.uow import AlreadyAppliedError, HeldError
from infra.message_context import MessageContext
from infra.telemetry import context_from_traceparent

if TYPE_CHECKING:
    import uuid
    from collections.abc import Awaitable, Callable, Mapping

    from aio_pika.abc import AbstractIncomingMessage

    from events import Envelope, Message
    from infra.consumers.declaration import Consumer
    from infra.consumers.held import HeldMessages
    from infra.db.uow import UnitOfWork

log = structlog.get_logger("hisho.consumer")
_tracer = trace.get_tracer("hisho.consumer")
REDRIVE_HEADER = "x-hisho-redrive"  # set on a parked message sent back to its consumer


class Outcome(StrEnum):
    """What one delivery did."""

    APPLIED = "applied"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    HELD = "held"


class Runner:
    """Applies the messages of one consumer; one instance per consumer per process."""

    def __init__(
        self,
        consumer: Consumer,
        unit: Callable[[], UnitOfWork],
        *,
        held: HeldMessages | None = None,
        park_copy: Callable[[bytes, Mapping[str, Any], Settlement], Awaitable[None]] | None = None,
        deps: Mapping[str, Any] | None = None,
    ) -> None:
        """Prepare the handlers' injected arguments.

        `deps` fill the handlers' keyword-only parameters by name (`clock`, `effects`, ...);
        `park_copy` publishes the parking copy of a released message that failed.
        """
        if consumer.ordered is not None and held is None:
            raise ValueError(f"{consumer.name} is ordered: it needs a store of held messages")
        self.injected = {
            model: _injected(consumer.name, handler, deps or {})
            for model, handler in consumer.handlers.items()
        }
        self.consumer = consumer
        self.unit = unit
        self.held = held
        self.policy = policy_for(consumer, self)
        self.park_copy = park_copy

    async def deliver(
        self,
        envelope: Envelope[Message],
        body: bytes,
        headers: Mapping[str, Any],
        *,
        redelivered: bool = False,
    ) -> Outcome:
        """Apply one delivered message (raises what the runtime should retry or park).

        A re-driven or redelivered message of an ordered consumer may have been parked or held
        before: once it is applied, the messages held behind it are released.
        """
        with _tracer.start_as_current_span(
            f"{self.consumer.name} {envelope.type}",
            context=context_from_traceparent(envelope.traceparent),
            kind=trace.SpanKind.CONSUMER,
        ):
            if self.consumer.ordered is None:
                return await self.apply(envelope)
            key = partition_key(envelope)
            try:
                outcome = await self.apply(envelope, key=key)
            except HeldError as held:
                return await self._hold(envelope, key, body, headers, held)
            if redelivered or headers.get(REDRIVE_HEADER) == self.consumer.name:
                await self.release(key)  # it may have been held (or parked) before
            return outcome

    async def apply(self, envelope: Envelope[Message], *, key: str | None = None) -> Outcome:
        """Claim, handle and commit one message in a fresh unit; a refusal is recorded."""
        handler = self.consumer.handler_for(envelope.data)
        if handler is None:
            raise InvalidMessageError(envelope.type, "type", f"not handled by {self.consumer.name}")
        injected = self.injected[type(envelope.data)]
        uow = self.unit()
        async with uow:
            uow.context = MessageContext.caused_by(envelope)  # the commit drains events with it
            if not await self._claim(uow, envelope, key):
                return Outcome.DUPLICATE  # a redelivery this consumer already applied
            try:
                await handler(envelope, uow, **injected)
                await uow.commit()
            except AlreadyAppliedError:
                return Outcome.DUPLICATE  # a copy was applied first (found by the commit)
            except DomainError as error:  # the handler's or the commit's refusal
                refusal = error
            else:
                return Outcome.APPLIED
        return await self._reject(envelope, key, refusal)

    async def _claim(self, uow: UnitOfWork, envelope: Envelope[Message], key: str | None) -> bool:
        if not await uow.inbox.claim(self.consumer.name, envelope.id):
            return False
        if key is not None:
            uow.hold_guard(self.consumer.name, key, envelope.id)
        return True

    async def _reject(
        self, envelope: Envelope[Message], key: str | None, refusal: DomainError
    ) -> Outcome:
        log.info(
            "message refused", consumer=self.consumer.name, id=str(envelope.id), code=refusal.code
        )
        uow = self.unit()
        async with uow:
            if not await self._claim(uow, envelope, key):
                return Outcome.DUPLICATE
            if self.consumer.on_reject is not None:
                await self.consumer.on_reject(envelope, uow, refusal)
            try:
                await uow.commit()  # the inbox row and the recorded refusal only
            except AlreadyAppliedError:
                return Outcome.DUPLICATE
        return Outcome.REJECTED

    async def _hold(
        self,
        envelope: Envelope[Message],
        key: str,
        body: bytes,
        headers: Mapping[str, Any],
        held: HeldError,
    ) -> Outcome:
        assert self.held is not None
        reason = f"held: blocked by {held.blocker}"
        waiting = HeldMessage(envelope.id, parked=False, reason=reason, body=body, headers=headers)
        await self.held.hold(self.consumer.name, key, waiting)
        log.warning("message held", consumer=self.consumer.name, id=str(envelope.id), reason=reason)
        head = await self.held.head(self.consumer.name, key)
        if head is not None and not head.parked:
            await self.release(key)  # nobody blocks any more (a release was cut short)
        return Outcome.HELD

    async def release(self, key: str) -> int:
        """Apply the messages held for `key`, in order, until one is parked; how many ran."""
        assert self.held is not None
        released = 0
        while (head := await self.held.head(self.consumer.name, key)) is not None:
            if head.parked:
                break
            try:
                outcome = await call_with_retries(
                    partial(self.apply, catalog.decode(head.body), key=key), self.policy
                )
            except Exception as error:  # noqa: BLE001  (parked, the others stay held)
                await self._park_released(head.message_id, head.body, head.headers, error)
                break
            if outcome is Outcome.DUPLICATE:  # applied before it was held: nothing to do
                await self.held.drop(self.consumer.name, head.message_id)
            released += 1
        return released

    async def release_stuck(self) -> None:
        """Release every key whose head is held but not parked (a release cut short by a crash)."""
        if self.held is not None:
            for key in await self.held.stuck_keys(self.consumer.name):
                await self.release(key)

    async def _park_released(
        self,
        message_id: uuid.UUID,
        body: bytes,
        headers: Mapping[str, Any],
        error: Exception,
    ) -> None:
        assert self.held is not None
        settlement = settlement_for(error, self.policy, retries_done=0)
        await self.parking(body, headers, str(message_id), None, settlement)
        if self.park_copy is not None:
            await self.park_copy(body, headers, settlement)

    async def parking(
        self,
        body: bytes,
        headers: Mapping[str, Any],
        message_id: str | None,
        routing_key: str | None,
        settlement: Settlement,
    ) -> None:
        """Before a message is parked: hold its key (ordered), then record it and `on_park`.

        A body that cannot be decoded has no key: it is parked without holding anything.
        The record (`parked_messages`) and the consumer's `on_park` commit in one unit.
        """
        if settlement.action != "park":
            return
        if self.held is not None:
            try:
                envelope = catalog.decode(body)
            except ContractError:
                pass
            else:
                stamped = {**headers, PARKED_CONSUMER_HEADER: self.consumer.name}
                parked = HeldMessage(
                    envelope.id, parked=True, reason=settlement.reason, body=body, headers=stamped
                )
                await self.held.hold(self.consumer.name, partition_key(envelope), parked)
        uow = self.unit()
        async with uow:
            message = Parked(body, message_id, routing_key, settlement)
            uow.rows.add(PARKED_MESSAGES, parked_row(self.consumer, message, headers))
            if self.consumer.on_park is not None:
                await self.consumer.on_park(message, uow)
            await uow.commit()


def _injected(
    consumer: str, handler: Callable[..., Any], deps: Mapping[str, Any]
) -> dict[str, Any]:
    """The keyword-only arguments a handler asks for, from `deps` (missing: a start-up error)."""
    wanted = [
        name
        for name, parameter in inspect.signature(handler).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        and parameter.default is inspect.Parameter.empty
    ]
    missing = [name for name in wanted if name not in deps]
    if missing:
        raise ValueError(f"{consumer}: {handler.__name__} needs {missing}, which nobody provides")
    return {name: deps[name] for name in wanted}


def policy_for(consumer: Consumer, runner: Runner | None = None) -> RuntimePolicy:
    """The runtime policy of a consumer: its queues, attempts, transient rule, park hooks."""
    policy = RuntimePolicy(
        queues=consumer.queue_spec(),
        attempts=consumer.attempts,
        transient=consumer.transient or is_retryable,
    )
    if runner is None:
        return policy

    async def parking(raw: AbstractIncomingMessage, settlement: Settlement) -> None:
        await runner.parking(
            raw.body, raw.headers or {}, raw.message_id, raw.routing_key, settlement
        )

    return replace(policy, on_park=parking)
