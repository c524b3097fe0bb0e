"""The consumer runtime: how every hisho consumer decodes, retries and parks its messages.

A consumer's FastStream router installs `runtime_middleware(policy)` and subscribes with
`ack_policy=AckPolicy.NACK_ON_ERROR`. Around each handler call the middleware

1. runs the handler, retrying in-process (tenacity, short jittered backoff) while the error
   is transient (`policy.transient`: lost database connections, serialization failures,
   optimistic-concurrency conflicts, ...);
2. when the in-process attempts are spent on a transient error, republishes the message to
   the consumer's next delay queue on `hisho.retry` (`x-hisho-retries` counts the rounds),
   and acknowledges the original: the delay queue dead-letters it back after its TTL;
3. when the error is not transient (a `ContractError` from decoding: bad JSON, unknown type,
   wrong fields; or a bug), or the delayed rounds are spent too, calls `policy.on_park`
   (the consumer records the failure: the processor marks the command `failed`), publishes
   a copy to `hisho.dead` with the consumer's parking key and the reason in
   `x-hisho-parked-*` headers, and acknowledges the original, so one bad message never
   blocks the queue. If `on_park` fails, the message waits in the last delay queue instead.

The copy is published with a publisher confirm on the channel the message came from,
before the acknowledgement: a crash in between redelivers the original, so a message is
parked or retried at least once and never lost. If the copy cannot be published (broker
gone), the error escapes and the ack policy returns the message to the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypeVar

import structlog
from aiormq import spec
from faststream import BaseMiddleware
from faststream.exceptions import IgnoredException
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from events import ContractError, Envelope, Message, catalog
from infra.db.transient import is_transient_database_error
from infra.db.uow import ConcurrencyError
from infra.topology import DEAD_EXCHANGE, RETRY_EXCHANGE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from aio_pika.abc import AbstractIncomingMessage
    from faststream._internal.basic_types import AsyncFuncAny
    from faststream._internal.context.repository import ContextRepo
    from faststream.message import StreamMessage

log = structlog.get_logger("hisho.consumer")

T = TypeVar("T")
ParkHook: TypeAlias = "Callable[[AbstractIncomingMessage, Settlement], Awaitable[None]]"

PARKED_REASON_HEADER = "x-hisho-parked-reason"
PARKED_ERROR_HEADER = "x-hisho-parked-error"
PARKED_CONSUMER_HEADER = "x-hisho-parked-consumer"
PARKED_AT_HEADER = "x-hisho-parked-at"
ORIGINAL_EXCHANGE_HEADER = "x-hisho-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER = "x-hisho-original-routing-key"
RETRIES_HEADER = "x-hisho-retries"
RETRY_REASON_HEADER = "x-hisho-retry-reason"
_MAX_REASON = 1_000


def is_transient(error: BaseException) -> bool:
    """Whether trying again later may succeed: connection, timeout and database hiccups."""
    return isinstance(error, ConnectionError | TimeoutError) or is_transient_database_error(error)


def is_retryable(error: BaseException) -> bool:
    """The default: transient errors and optimistic-concurrency conflicts are tried again."""
    return isinstance(error, ConcurrencyError) or is_transient(error)


class SettlingQueues(Protocol):
    """Where a consumer's failed messages go (`ConsumerQueues`; `PartitionedQueues`: no delays)."""

    @property
    def consumer(self) -> str:
        """The consumer's name."""
        ...

    @property
    def parking_routing_key(self) -> str:
        """Publish to `hisho.dead` with this key to park a message."""
        ...

    @property
    def retry_delays_ms(self) -> tuple[int, ...]:
        """The delay ladder (none for an ordered consumer)."""
        ...

    def next_retry(self, retries_done: int) -> str | None:
        """The retry routing key after `retries_done` rounds, or None: park it."""
        ...

    def retry_routing_key(self, delay_ms: int) -> str:
        """Publish to `hisho.retry` with this key to retry after `delay_ms`."""
        ...


@dataclass(frozen=True)
class RuntimePolicy:
    """How one consumer retries and parks: its queues, attempts and what counts as transient."""

    queues: SettlingQueues
    attempts: int = 5
    first_wait: float = 0.002
    max_wait: float = 0.1
    transient: Callable[[BaseException], bool] = is_transient
    # Called before a message is parked (e.g. the processor marks its command `failed`); if
    # it raises, the message is not parked yet but waits in the last delay queue.
    on_park: ParkHook | None = None


@dataclass(frozen=True)
class Settlement:
    """Where a message goes when its handler gave up: a delay queue or the parking queue."""

    action: Literal["retry", "park"]
    exchange: str
    routing_key: str
    reason: str
    error: str
    consumer: str


def settlement_for(error: BaseException, policy: RuntimePolicy, retries_done: int) -> Settlement:
    """Decide where a failed message goes; transient errors climb the delay ladder first."""
    queues, name = policy.queues, type(error).__name__
    if isinstance(error, ContractError):
        reason = f"invalid message: {error}"
    elif policy.transient(error):
        key = queues.next_retry(retries_done)
        reason = f"{name}: {error}"
        if key is not None:
            return Settlement("retry", RETRY_EXCHANGE, key, reason, name, queues.consumer)
        spent = (
            f"{retries_done} delayed retries"
            if queues.retry_delays_ms
            else f"{policy.attempts} attempts"  # an ordered consumer retries in process only
        )
        reason = f"gave up after {spent}: {reason}"
    else:
        reason = f"unexpected error: {name}: {error}"
    key, reason = queues.parking_routing_key, reason[:_MAX_REASON]
    return Settlement("park", DEAD_EXCHANGE, key, reason, name, queues.consumer)


def retrying(policy: RuntimePolicy) -> AsyncRetrying:
    """A tenacity controller: `policy.attempts` tries while the error is transient."""
    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_random_exponential(multiplier=policy.first_wait, max=policy.max_wait),
        retry=retry_if_exception(policy.transient),
        reraise=True,
    )


async def call_with_retries(call: Callable[[], Awaitable[T]], policy: RuntimePolicy) -> T:
    """Await `call()` again (a fresh call each time) while it fails transiently."""
    try:
        return await call()  # the common case, without building a retry controller
    except Exception as error:
        if policy.attempts <= 1 or not policy.transient(error):
            raise
    again = replace(policy, attempts=policy.attempts - 1)
    async for attempt in retrying(again):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


async def decode_envelope(message: StreamMessage[Any]) -> Envelope[Message]:
    """FastStream decoder: the body through the catalog; a `ContractError` gets it parked."""
    return catalog.decode(message.body)


def retries_done(raw: AbstractIncomingMessage) -> int:
    """How many delayed retry rounds a message has been through."""
    value = (raw.headers or {}).get(RETRIES_HEADER, 0)
    return value if isinstance(value, int) and value >= 0 else 0


def settled_headers(
    headers: Mapping[str, Any], exchange: str, routing_key: str, settlement: Settlement
) -> dict[str, Any]:
    """The headers of a delay or parking copy: the original ones, where it came from, why."""
    settled: dict[str, Any] = dict(headers)
    settled[ORIGINAL_EXCHANGE_HEADER] = settled.get(ORIGINAL_EXCHANGE_HEADER, exchange)
    settled[ORIGINAL_ROUTING_KEY_HEADER] = settled.get(ORIGINAL_ROUTING_KEY_HEADER, routing_key)
    if settlement.action == "retry":
        retries = settled.get(RETRIES_HEADER, 0)
        settled[RETRIES_HEADER] = (retries if isinstance(retries, int) and retries >= 0 else 0) + 1
        settled[RETRY_REASON_HEADER] = settlement.reason
    else:
        settled[PARKED_REASON_HEADER] = settlement.reason
        settled[PARKED_ERROR_HEADER] = settlement.error
        settled[PARKED_CONSUMER_HEADER] = settlement.consumer
        settled[PARKED_AT_HEADER] = datetime.now(UTC).isoformat()
    return settled


def settled_copy(raw: AbstractIncomingMessage, settlement: Settlement) -> spec.Basic.Properties:
    """The properties of the copy sent to a delay or parking queue (original ones kept)."""
    properties = raw.properties
    properties.headers = settled_headers(
        raw.headers or {}, raw.exchange or "", raw.routing_key or "", settlement
    )
    properties.delivery_mode = 2
    return properties


class RuntimeMiddleware(BaseMiddleware):
    """Retries transient failures in-process, then sends the message to a delay or parking queue."""

    def __init__(self, msg: Any, /, *, context: ContextRepo, policy: RuntimePolicy) -> None:  # noqa: ANN401
        super().__init__(msg, context=context)
        self.policy = policy

    async def consume_scope(self, call_next: AsyncFuncAny, msg: StreamMessage[Any]) -> Any:  # noqa: ANN401
        """Run the handler; settle whatever it could not finish."""
        try:
            return await call_with_retries(lambda: call_next(msg), self.policy)
        except IgnoredException:
            raise  # FastStream's own Ack/Nack/Reject/Skip signals
        except Exception as exc:  # noqa: BLE001  (settling every failure is this class's job)
            raw: AbstractIncomingMessage = msg.raw_message
            settlement = settlement_for(exc, self.policy, retries_done(raw))
        settlement = await before_parking(raw, settlement, self.policy)
        try:
            await settle(raw, settlement)
        except Exception:
            log.exception("could not settle; the message goes back to the queue")
            raise
        return None


async def before_parking(
    raw: AbstractIncomingMessage, settlement: Settlement, policy: RuntimePolicy
) -> Settlement:
    """Run the consumer's `on_park` before a message is parked; the settlement to carry out.

    If `on_park` fails (the database it records in is down, say), the message is not parked
    yet: it goes to the last delay queue and is tried again from there (parked next time if
    it still fails and `on_park` works). With no delay queue, the error escapes and the
    message goes back to its queue.
    """
    if settlement.action != "park" or policy.on_park is None:
        return settlement
    try:
        await policy.on_park(raw, settlement)
    except Exception as failure:
        delays = policy.queues.retry_delays_ms
        if not delays:
            raise
        log.warning("could not record a parking; held back", error=repr(failure))
        reason = f"parking held back ({type(failure).__name__}: {failure}): {settlement.reason}"
        key = policy.queues.retry_routing_key(delays[-1])
        return replace(
            settlement,
            action="retry",
            exchange=RETRY_EXCHANGE,
            routing_key=key,
            reason=reason[:_MAX_REASON],
        )
    return settlement


async def settle(raw: AbstractIncomingMessage, settlement: Settlement) -> None:
    """Publish the settled copy with a confirm on the message's own channel."""
    confirmation = await raw.channel.basic_publish(
        raw.body,
        exchange=settlement.exchange,
        routing_key=settlement.routing_key,
        properties=settled_copy(raw, settlement),
        mandatory=True,
    )
    if not isinstance(confirmation, spec.Basic.Ack):
        raise ConnectionError(f"broker did not confirm the {settlement.action} copy")
    log.warning(
        "message parked" if settlement.action == "park" else "message sent to retry",
        message_id=raw.message_id,
        routing_key=raw.routing_key,
        to=settlement.routing_key,
        reason=settlement.reason,
    )


def runtime_middleware(policy: RuntimePolicy) -> Callable[..., RuntimeMiddleware]:
    """The middleware factory a router takes: `RabbitRouter(middlewares=[...])`."""
    return partial(RuntimeMiddleware, policy=policy)
