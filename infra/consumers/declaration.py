"""A consumer is declared, not wired: its name, what it reads, and its handlers by message type.

    CONSUMER = Consumer(
        name="approval",
        handlers={PlanSubmitted: handle_plan_submitted, PlanApproved: handle_plan_approved},
    )

From the declaration the framework derives everything else: the queues (`queue_spec`, which
`declare_topology` declares for every registered consumer), the bindings (the routing keys
of the handled types, from the catalog, unless given), the FastStream router
(`infra.consumers.router`) and the `hisho run <name>` entry.

- An unordered consumer reads `hisho.<name>` (quorum), retries transient failures in
  process, then through its delay queues (`hisho.<name>.retry.<ms>ms`), then parks to
  `hisho.<name>.parked`.
- An ordered consumer (`ordered=Ordered(partitions=N)`) reads `hisho.<name>.p0…p<N-1>`
  (single active consumer each, routed by the `partition_slot` header of the message's
  partition key: aggregate id of an event, target id of a command). It handles a
  partition's messages one at a time, retries in process, then parks, and holds back the
  later messages of a parked key until the parked one is re-driven (`infra.consumers.held`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from events import Message, catalog
from infra.partitions import PartitionedQueues
from infra.topology import (
    COMMANDS_EXCHANGE,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_RETRY_DELAYS_MS,
    EVENTS_EXCHANGE,
    ConsumerQueues,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

    from domain.errors import DomainError
    from events import Envelope
    from infra.consumers.runtime import Settlement
    from infra.db.uow import UnitOfWork

# `async def handle_x(envelope, uow, *, clock, effects, ...) -> None`: keyword-only parameters
# are injected by name from what the composition root provides (`Runner(deps=...)`).
Handler: TypeAlias = "Callable[..., Awaitable[None]]"
# Called in a fresh unit (no inbox claim) before a message is parked: what the consumer
# records of it (the processor: `failed`). If it raises, the message is not parked yet.
ParkHook: TypeAlias = "Callable[[Parked, UnitOfWork], Awaitable[None]]"
# Called in a fresh unit (inbox claimed) when the handler or the commit refused with a
# `DomainError`: what the consumer records of the refusal (the processor: `rejected`).
RejectHook: TypeAlias = "Callable[[Envelope[Any], UnitOfWork, DomainError], Awaitable[None]]"
QueueSpec: TypeAlias = ConsumerQueues | PartitionedQueues

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Parked:
    """A message about to be parked, as far as a park hook can read it."""

    body: bytes
    message_id: str | None
    routing_key: str | None
    settlement: Settlement


@dataclass(frozen=True)
class Ordered:
    """Per-key order: the consumer's queue is split into `partitions` single-active queues."""

    partitions: int = 4


@dataclass(frozen=True)
class Consumer:
    """One consumer: a permanent name (its inbox key and queue names), handlers by type."""

    name: str
    handlers: Mapping[type[Message], Handler]
    bindings: tuple[str, ...] = ()  # routing keys/patterns; default: the handled types' keys
    ordered: Ordered | None = None
    prefetch: int = 100  # unordered: messages in flight at once (ordered: one per partition)
    retry_delays_ms: tuple[int, ...] = DEFAULT_RETRY_DELAYS_MS
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    attempts: int = 5  # in-process attempts of a transient failure
    on_reject: RejectHook | None = None
    on_park: ParkHook | None = None
    transient: Callable[[BaseException], bool] | None = None  # default: `is_retryable`
    command: str | None = None  # its `hisho run` name, if not its name

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"consumer name {self.name!r} must be lower snake case")
        if not self.handlers:
            raise ValueError(f"consumer {self.name!r} handles no message type")
        kinds = {catalog.entry_for(model).kind for model in self.handlers}
        if len(kinds) != 1:
            raise ValueError(f"consumer {self.name!r} mixes commands and events")

    @property
    def source(self) -> str:
        """The exchange it reads: `hisho.commands` for commands, `hisho.events` for events."""
        (model, *_) = self.handlers
        return COMMANDS_EXCHANGE if catalog.entry_for(model).kind == "command" else EVENTS_EXCHANGE

    @property
    def routing_keys(self) -> tuple[str, ...]:
        """Its bindings: as declared, or the routing key of every handled type."""
        return self.bindings or tuple(
            catalog.entry_for(model).routing_key for model in self.handlers
        )

    def queue_spec(self) -> QueueSpec:
        """The queues the framework declares for it."""
        if self.ordered is not None:
            return PartitionedQueues(
                consumer=self.name,
                bindings=self.routing_keys,
                partitions=self.ordered.partitions,
                source=self.source,
                delivery_limit=self.delivery_limit,
            )
        return ConsumerQueues(
            consumer=self.name,
            source=self.source,
            bindings=self.routing_keys,
            retry_delays_ms=self.retry_delays_ms,
            delivery_limit=self.delivery_limit,
        )

    def handler_for(self, message: Message) -> Handler | None:
        """The handler of a message's type, or None (the message is parked as unexpected)."""
        return self.handlers.get(type(message))


class ConsumerRegistry:
    """Every consumer of the system by name: what `declare_topology` and `hisho run` see."""

    def __init__(self, consumers: tuple[Consumer, ...] = ()) -> None:
        self._by_name: dict[str, Consumer] = {}
        for consumer in consumers:
            self.add(consumer)

    def add(self, consumer: Consumer) -> None:
        """Register a consumer; names are permanent and unique."""
        if consumer.name in self._by_name:
            raise ValueError(f"consumer {consumer.name!r} registered twice")
        self._by_name[consumer.name] = consumer

    def __getitem__(self, name: str) -> Consumer:
        return self._by_name[name]

    def __iter__(self) -> Iterator[Consumer]:
        return iter(self._by_name.values())

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._by_name)

    def queue_specs(self) -> tuple[QueueSpec, ...]:
        """Every registered consumer's queues."""
        return tuple(consumer.queue_spec() for consumer in self)
