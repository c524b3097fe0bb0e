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

from events import catalog
from hisho.cli import app
from infra.topology import (
    COMMAND_PARKED_QUEUE,
    COMMAND_QUEUE,
    COMMANDS_EXCHANGE,
    DEAD_EXCHANGE,
    EVENTS_EXCHANGE,
    EXCHANGES,
    RETRY_EXCHANGE,
    ConsumerQueues,
    TopologyConflictError,
    command_processor_queues,
    declare_consumer_queues,
    declare_exchanges,
    declare_queues,
    declare_topology,
)

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


async def test_declaring_twice_keeps_every_entity_as_declared(
    amqp: Connection, channel: AbstractChannel
) -> None:
    await declare_topology(amqp)
    await declare_topology(amqp)
    for name, kind in EXCHANGES:  # same type and flags again: accepted, so they match
        await channel.declare_exchange(name, kind, durable=True)
    spec = command_processor_queues()
    await declare_queues(channel, spec)  # same arguments again: accepted
    for name in [COMMAND_QUEUE, COMMAND_PARKED_QUEUE, *map(spec.retry_queue, spec.retry_delays_ms)]:
        await channel.declare_queue(name, passive=True)


@pytest.mark.parametrize("command_type", [e.type for e in catalog.entries() if e.kind == "command"])
async def test_every_command_type_routes_to_the_command_processor_queue(
    amqp: Connection, command_type: str
) -> None:
    async with amqp.channel(on_return_raises=True) as ch:
        exchange = await ch.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        message_id = str(uuid.uuid4())
        key = catalog.entry(command_type).routing_key
        await exchange.publish(Message(b"{}", message_id=message_id), key, mandatory=True)
        queue = await ch.declare_queue(COMMAND_QUEUE, passive=True)
        message = await _get(queue, message_id)
        await message.ack()
        assert message.routing_key == key


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
    await declare_topology(amqp)


def test_cli_topology_declares_and_reports_the_command_bindings() -> None:
    result = CliRunner().invoke(app, ["topology"])
    assert result.exit_code == 0, result.output
    assert f"{COMMAND_QUEUE} bound to" in result.output
