"""The four scenarios every consumer passes, written once, run with fakes and on the real broker.

A consumer under test is wrapped by `with_failures` (its handlers first ask a `Failures`
whether the message should fail), then driven by a `ConsumerDriver`: `FakeConsumerDriver`
(its runner over the fake database, the runtime's retries and parking done in process) or
`LiveConsumerDriver` (the framework's router on the real broker and PostgreSQL,
`tests.consumer_harness.running`). A consumer's effects are what a message caused: the
outbox rows (their types) and the timers it armed (their keys), in order.

1. redelivery: the same envelope twice → one effect;
2. transient failure twice, then success → one effect, nothing parked;
3. poison → parked with the reason while later messages flow;
4. re-drive after the cause is fixed → one effect.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from infra.consumers.redrive import redrive
from infra.consumers.runner import REDRIVE_HEADER, Runner
from infra.consumers.runtime import PARKED_REASON_HEADER, Settlement
from infra.db.engine import driver_of
from infra.db.tables import OUTBOX
from infra.db.timer_tables import TIMERS
from tests.consumer_support import Failures, FakeHeldMessages, deliver_with_retries
from tests.fakes import FakeDatabase, FakeUnitOfWork

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from events import Envelope, Message
    from infra.consumers import Consumer
    from tests.consumer_harness import Live

Effects = list[str]  # "<outbox type>" and "timer <key>", in the order written
EFFECTS_DEADLINE = 20.0
_CAUSED = f"SELECT type FROM {OUTBOX.name} WHERE causation_id = $1 ORDER BY seq"
_TIMERS = f"SELECT key FROM {TIMERS.name} WHERE causation_id = $1 ORDER BY key"


def with_failures(consumer: Consumer, failures: Failures) -> Consumer:
    """`consumer` whose handlers first let `failures` fail the message (same injections)."""

    def failing(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def handle(envelope: Envelope[Message], uow: Any, **deps: Any) -> None:
            failures.check(envelope.id)
            await handler(envelope, uow, **deps)

        handle.__signature__ = inspect.signature(handler)  # type: ignore[attr-defined]
        return handle

    return replace(consumer, handlers={t: failing(h) for t, h in consumer.handlers.items()})


class ConsumerDriver(Protocol):
    """Delivers a consumer's messages and reads back what each caused."""

    failures: Failures

    async def deliver(self, envelope: Envelope[Message]) -> None:
        """Deliver one message (again, if it was before) and wait until it is handled."""
        ...

    async def redrive(self, envelope: Envelope[Message]) -> None:
        """Send a parked message back to the consumer, as an operator does."""
        ...

    async def effects(self, message_id: uuid.UUID) -> Effects:
        """What the message caused."""
        ...

    async def parked(self) -> dict[uuid.UUID, str]:
        """The parked messages and their parking reasons."""
        ...


@dataclass
class FakeConsumerDriver:
    """A `ConsumerDriver` over the fake database: retries and parking done in process."""

    consumer: Consumer
    failures: Failures
    deps: Mapping[str, Any]

    def __post_init__(self) -> None:
        self.db = FakeDatabase()
        self.runner: Runner = _fake_runner(self.consumer, self.db, self.deps)
        self._parked: dict[uuid.UUID, str] = {}

    async def deliver(self, envelope: Envelope[Message]) -> None:
        """Through the runtime's retries; a message that still fails is parked."""
        await self._deliver(envelope, {})

    async def redrive(self, envelope: Envelope[Message]) -> None:
        """The parked copy comes back, marked re-driven."""
        self._parked.pop(envelope.id, None)
        await self._deliver(envelope, {REDRIVE_HEADER: self.consumer.name})

    async def _deliver(self, envelope: Envelope[Message], headers: dict[str, Any]) -> None:
        settled = await deliver_with_retries(self.runner, envelope, headers)
        if isinstance(settled, Settlement) and settled.action == "park":
            self._parked[envelope.id] = settled.reason

    async def effects(self, message_id: uuid.UUID) -> Effects:
        """Outbox envelopes and timers whose cause is the message."""
        caused = [e.type for e in self.db.envelopes if e.causation_id == message_id]
        timers = sorted(
            f"timer {row['key']}"
            for row in self.db.table(TIMERS)
            if row["causation_id"] == message_id
        )
        return caused + timers

    async def parked(self) -> dict[uuid.UUID, str]:
        """The messages the runtime parked, with the reason."""
        return dict(self._parked)


def _fake_runner(consumer: Consumer, db: FakeDatabase, deps: Mapping[str, Any]) -> Runner:
    held = FakeHeldMessages(db) if consumer.ordered is not None else None
    return Runner(consumer, lambda: FakeUnitOfWork(db=db), held=held, deps=deps)


@dataclass
class LiveConsumerDriver:
    """A `ConsumerDriver` over the framework's router on the real broker and PostgreSQL."""

    live: Live
    failures: Failures

    async def deliver(self, envelope: Envelope[Message]) -> None:
        """Publish as the relay does; wait until it is applied or parked."""
        await self.live.publish(envelope)
        await self._handled(envelope.id)

    async def redrive(self, envelope: Envelope[Message]) -> None:
        """`infra.consumers.redrive`, as `hisho parked redrive` does."""
        await redrive(self.live.amqp, self.live.consumer, message_id=str(envelope.id))
        await self._handled(envelope.id, parked_ok=False)

    async def _handled(self, message_id: uuid.UUID, *, parked_ok: bool = True) -> None:
        deadline = time.monotonic() + EFFECTS_DEADLINE
        while time.monotonic() < deadline:
            if await self._claimed(message_id):
                return
            if parked_ok and message_id in await self.parked():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{message_id} was neither applied nor parked")

    async def _claimed(self, message_id: uuid.UUID) -> bool:
        sql = "SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2"
        return bool(await self._query(sql, self.live.consumer.name, message_id))

    async def effects(self, message_id: uuid.UUID) -> Effects:
        """Outbox rows and timers whose cause is the message, in the order written."""
        caused = await self._query(_CAUSED, message_id)
        timers = await self._query(_TIMERS, message_id)
        return [row[0] for row in caused] + [f"timer {row[0]}" for row in timers]

    async def _query(self, sql: str, *args: Any) -> list[Any]:
        async with self.live.engine.connect() as connection:
            driver = await driver_of(connection)
            return list(await driver.fetch(sql, *args))

    async def parked(self) -> dict[uuid.UUID, str]:
        """The consumer's parking queue, read and left there.

        On a channel of its own each time: passive declarations repeated on one channel kept
        answering the first message count.
        """
        channel = await self.live.amqp.channel()
        try:
            queue = await channel.get_queue(self.live.consumer.queue_spec().parked, ensure=False)
            messages = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                messages.append(message)
            found = {
                uuid.UUID(str(message.message_id)): str(
                    (message.headers or {}).get(PARKED_REASON_HEADER, "")
                )
                for message in messages
            }
            for message in messages:
                await message.nack(requeue=True)
        finally:
            await channel.close()
        return found


async def redelivery_has_one_effect(driver: ConsumerDriver, message: Envelope[Message]) -> None:
    """The same envelope twice: what it caused, once."""
    await driver.deliver(message)
    first = await driver.effects(message.id)
    await driver.deliver(message)
    assert first, "the message caused nothing: the scenario needs a message with an effect"
    assert await driver.effects(message.id) == first


async def transient_failure_is_retried_to_one_effect(
    driver: ConsumerDriver, message: Envelope[Message], expected: Effects
) -> None:
    """Fails twice (a lost connection), then succeeds: one effect, nothing parked."""
    driver.failures.transient[message.id] = 2
    await driver.deliver(message)
    assert await driver.effects(message.id) == expected
    assert driver.failures.calls[message.id] == 3
    assert message.id not in await driver.parked()


async def poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
    driver: ConsumerDriver,
    poison: Envelope[Message],
    later: Envelope[Message],
    expected: Effects,
    parked_effects: Effects | None = None,
) -> None:
    """A bug parks the message with its reason; the next one is applied; re-drive applies it.

    `parked_effects`: what parking the message caused (a park hook's record), if anything.
    """
    driver.failures.poison.add(poison.id)
    await driver.deliver(poison)
    await driver.deliver(later)
    parked = await driver.parked()
    assert parked.get(poison.id, "").startswith("unexpected error: ValueError: poison")
    assert await driver.effects(poison.id) == (parked_effects or [])
    assert await driver.effects(later.id) != []
    driver.failures.poison.clear()  # the cause is fixed
    await driver.redrive(poison)
    assert await driver.effects(poison.id) == expected
