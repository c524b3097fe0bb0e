"""Topology on the real broker: idempotent, routes, retries and parks, refuses conflicts.

hisho's own entities are only declared (never deleted); everything a test creates has a
unique name and is deleted by the test.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import aio_pika
import pytest
from aio_pika import ExchangeType, Message
from typer.testing import CliRunner

from consumers.command_processor import CONSUMER
from events import catalog
from hisho.cli import app
from hisho.consumers import CONSUMERS, declare_all
from infra.partitions import PARTITION_HEADER, PARTITION_SLOTS, PartitionedQueues
from infra.topology import (
    COMMAND_PARKED_QUEUE,
    COMMANDS_EXCHANGE,
    DEAD_EXCHANGE,
    EVENTS_EXCHANGE,
    EXCHANGES,
    RETRY_EXCHANGE,
    ConsumerQueues,
    TopologyConflictError,
    declare_consumer_queues,
    declare_exchanges,
    declare_queues,
)
from tests.processor_support import consume_one

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
    from aio_pika.abc import AbstractRobustConnection as Connection

DEADLINE = 10.0


@pytest.fixture
async def channel(amqp: Connection) -> AsyncIterator[AbstractChannel]:
    """A plain channel (a conflict closes it; nothing is replayed on reconnect)."""
    ch = aio_pika.Channel(amqp)
    await ch.initialize()
    yield ch
    if not ch.is_closed:
        await ch.close()


@pytest.fixture
async def scratch(amqp: Connection) -> AsyncIterator[list[str]]:
    """Names of test-made queues and exchanges to delete afterwards."""
    names: list[str] = []
    yield names
    async with amqp.channel() as ch:
        for name in names:
            await ch.queue_delete(name)
            await ch.exchange_delete(name)


def _unique(prefix: str = "topotest") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _scratch(spec: ConsumerQueues, names: list[str]) -> None:
    names.extend([spec.queue, spec.parked])
    names.extend(spec.retry_queue(delay) for delay in spec.retry_delays_ms)


async def _get(queue: AbstractQueue, message_id: str) -> AbstractIncomingMessage:
    """Poll `queue` until the message with `message_id` arrives; requeue any other."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.05)
        elif message.message_id == message_id:
            return message
        else:
            await message.nack(requeue=True)
    pytest.fail(f"message {message_id} never reached {queue.name}")


def _processor_queues() -> PartitionedQueues:
    spec = CONSUMER.queue_spec()
    assert isinstance(spec, PartitionedQueues)
    return spec


async def test_declaring_twice_keeps_every_entity_as_declared(
    amqp: Connection, channel: AbstractChannel
) -> None:
    await declare_all(amqp)
    await declare_all(amqp)
    for name, kind in EXCHANGES:  # same type and flags again: accepted, so they match
        await channel.declare_exchange(name, kind, durable=True)
    spec = _processor_queues()
    await spec.declare(channel)  # same arguments again: accepted
    for name in [*spec.queues, COMMAND_PARKED_QUEUE]:
        await channel.declare_queue(name, passive=True)
    for exchange in (spec.exchange, spec.unslotted):
        await channel.get_exchange(exchange, ensure=True)


@pytest.mark.parametrize(
    ("index", "command_type"),
    list(enumerate(e.type for e in catalog.entries() if e.kind == "command")),
)
async def test_every_command_type_routes_to_the_partition_of_its_slot(
    amqp: Connection, index: int, command_type: str
) -> None:
    spec = _processor_queues()
    slot = (index * 7) % PARTITION_SLOTS  # spread over the slots, and so over the partitions
    async with amqp.channel(on_return_raises=True) as ch:
        exchange = await ch.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        message_id = str(uuid.uuid4())
        key = catalog.entry(command_type).routing_key
        message = Message(b"{}", message_id=message_id, headers={PARTITION_HEADER: slot})
        await exchange.publish(message, key, mandatory=True)
    arrived = await consume_one(amqp, spec.queues[slot % spec.partitions], message_id)
    assert arrived.routing_key == key


async def test_a_command_without_a_slot_goes_to_the_first_partition(amqp: Connection) -> None:
    spec = _processor_queues()
    async with amqp.channel(on_return_raises=True) as ch:
        exchange = await ch.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        message_id = str(uuid.uuid4())
        await exchange.publish(
            Message(b"{}", message_id=message_id), "CreateProject", mandatory=True
        )
    message = await consume_one(amqp, spec.queues[0], message_id)
    assert message.routing_key == "CreateProject"


async def test_consumer_queues_route_park_rejects_and_retry_after_delay(
    channel: AbstractChannel, scratch: list[str]
) -> None:
    key = _unique("key")
    spec = await declare_consumer_queues(
        channel, _unique(), [key], source=COMMANDS_EXCHANGE, retry_delays_ms=(50, 100)
    )
    _scratch(spec, scratch)
    queue = await channel.get_queue(spec.queue)
    commands = await channel.get_exchange(COMMANDS_EXCHANGE)
    await commands.publish(Message(b"x", message_id="first"), key)
    await (await _get(queue, "first")).reject(requeue=False)
    parked = await _get(await channel.get_queue(spec.parked), "first")
    assert parked.headers["x-first-death-reason"] == "rejected"
    await parked.ack()

    retry_key = spec.next_retry(0)
    assert retry_key is not None
    retry = await channel.get_exchange(RETRY_EXCHANGE)
    await retry.publish(Message(b"x", message_id="again"), retry_key)
    back = await _get(queue, "again")
    assert back.headers["x-first-death-queue"] == spec.retry_queue(50)
    await back.ack()
    assert spec.next_retry(2) is None


async def test_poison_message_is_parked_after_its_delivery_limit(
    channel: AbstractChannel, scratch: list[str]
) -> None:
    key = _unique("key")
    spec = await declare_consumer_queues(channel, _unique(), [key], delivery_limit=1)
    _scratch(spec, scratch)
    queue = await channel.get_queue(spec.queue)
    events = await channel.get_exchange(EVENTS_EXCHANGE)
    await events.publish(Message(b"x", message_id="poison"), key)
    for _ in range(2):
        await (await _get(queue, "poison")).nack(requeue=True)
    parked = await _get(await channel.get_queue(spec.parked), "poison")
    assert parked.headers["x-first-death-reason"] == "delivery_limit"
    await parked.ack()


async def test_existing_exchange_of_another_type_is_a_typed_conflict(
    amqp: Connection, scratch: list[str]
) -> None:
    name = _unique()
    scratch.append(name)
    async with amqp.channel() as ch:
        await ch.declare_exchange(name, ExchangeType.FANOUT, durable=True)
    plain = aio_pika.Channel(amqp)
    await plain.initialize()
    with pytest.raises(TopologyConflictError) as caught:
        await declare_exchanges(plain, [(name, ExchangeType.TOPIC)])
    assert (caught.value.kind, caught.value.name) == ("exchange", name)
    assert "'type'" in caught.value.reason


async def test_existing_classic_queue_is_a_typed_conflict(
    amqp: Connection, channel: AbstractChannel, scratch: list[str]
) -> None:
    spec = ConsumerQueues(consumer=_unique(), bindings=("a.b",))
    _scratch(spec, scratch)
    async with amqp.channel() as ch:
        await ch.declare_queue(spec.queue, durable=True)
    with pytest.raises(TopologyConflictError) as caught:
        await declare_queues(channel, spec)
    assert (caught.value.kind, caught.value.name) == ("queue", spec.queue)


@pytest.mark.parametrize(("name", "wrong"), [(EVENTS_EXCHANGE, "fanout"), (DEAD_EXCHANGE, "topic")])
async def test_hisho_exchanges_refuse_another_type_and_stay_as_they_were(
    channel: AbstractChannel, amqp: Connection, name: str, wrong: str
) -> None:
    with pytest.raises(TopologyConflictError, match=name):
        await declare_exchanges(channel, [(name, ExchangeType(wrong))])
    await declare_all(amqp)


def test_cli_topology_declares_and_reports_every_consumer() -> None:
    result = CliRunner().invoke(app, ["topology"])
    assert result.exit_code == 0, result.output
    names = ", ".join(CONSUMERS.names())
    assert f"queues of {len(CONSUMERS.names())} consumers: {names}" in result.output
    assert CONSUMER.name in CONSUMERS.names()
