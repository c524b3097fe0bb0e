"""The topology as data: names, arguments and retry routing, with no broker."""

from __future__ import annotations

import pytest

from consumers.command_processor import CONSUMER
from events import catalog
from hisho.consumers import CONSUMERS
from infra.partitions import PARTITION_SLOTS, PartitionedQueues
from infra.topology import (
    COMMAND_PARKED_QUEUE,
    COMMAND_PROCESSOR,
    COMMANDS_EXCHANGE,
    DEAD_EXCHANGE,
    ConsumerQueues,
    TopologyConflictError,
    TopologyError,
)


def test_command_processor_is_bound_to_every_command_type_and_no_event() -> None:
    spec = CONSUMER.queue_spec()
    assert isinstance(spec, PartitionedQueues)
    commands = {e.routing_key for e in catalog.entries() if e.kind == "command"}
    assert commands
    assert set(spec.bindings) == commands
    assert spec.source == COMMANDS_EXCHANGE
    assert spec.consumer == COMMAND_PROCESSOR
    assert spec.parked == COMMAND_PARKED_QUEUE
    assert spec.exchange == "hisho.command_processor.partitioned"
    assert spec.queues == tuple(f"hisho.command_processor.p{i}" for i in range(16))


def test_command_processor_partitions_own_every_slot_once_and_have_no_delay_queue() -> None:
    spec = CONSUMER.queue_spec()
    assert isinstance(spec, PartitionedQueues)
    slots = [
        binding["partition_slot"]
        for partition in range(spec.partitions)
        for binding in spec.slot_bindings(partition)
    ]
    assert sorted(slots) == list(range(PARTITION_SLOTS))
    arguments = spec.queue_arguments()
    assert arguments["x-single-active-consumer"] is True
    assert arguments["x-dead-letter-exchange"] == DEAD_EXCHANGE
    assert arguments["x-dead-letter-routing-key"] == spec.parking_routing_key == COMMAND_PROCESSOR
    assert (spec.retry_delays_ms, spec.next_retry(0)) == ((), None)


def test_the_registry_holds_the_processor_and_yields_every_consumers_queues() -> None:
    assert CONSUMERS[COMMAND_PROCESSOR] is CONSUMER
    assert [spec.consumer for spec in CONSUMERS.queue_specs()] == list(CONSUMERS.names())


def test_main_queue_dead_letters_to_its_parking_key_at_least_once() -> None:
    spec = ConsumerQueues(consumer="approval", delivery_limit=5)
    arguments = spec.queue_arguments()
    assert arguments["x-dead-letter-exchange"] == DEAD_EXCHANGE
    assert arguments["x-dead-letter-routing-key"] == spec.parking_routing_key == "approval"
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-delivery-limit"] == 5
    assert "x-single-active-consumer" not in arguments
    assert ConsumerQueues(consumer="a", single_active=True).queue_arguments()[
        "x-single-active-consumer"
    ]


def test_delay_queue_returns_to_the_consumer_queue_only_after_its_ttl() -> None:
    spec = ConsumerQueues(consumer="approval", retry_delays_ms=(500, 5_000))
    assert spec.retry_queue(500) == "hisho.approval.retry.500ms"
    arguments = spec.retry_arguments(500)
    assert arguments["x-message-ttl"] == 500
    assert arguments["x-dead-letter-exchange"] == ""
    assert arguments["x-dead-letter-routing-key"] == "hisho.approval"


def test_next_retry_grows_through_the_delays_then_parks() -> None:
    spec = ConsumerQueues(consumer="approval", retry_delays_ms=(500, 5_000))
    assert [spec.next_retry(n) for n in range(3)] == ["approval.500ms", "approval.5000ms", None]


@pytest.mark.parametrize(
    "bad",
    [
        {"consumer": "Approval"},
        {"consumer": "hisho.approval"},
        {"consumer": "a", "retry_delays_ms": (0,)},
        {"consumer": "a", "retry_delays_ms": (10, 10)},
    ],
)
def test_consumer_queues_refuse_bad_names_and_delays(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"consumer name|delays"):
        ConsumerQueues(**bad)  # type: ignore[arg-type]


def test_conflict_error_names_the_entity_and_the_mismatch() -> None:
    error = TopologyConflictError("exchange", "hisho.events", "inequivalent arg 'type'")
    assert isinstance(error, TopologyError)
    assert str(error) == "exchange 'hisho.events': inequivalent arg 'type'"
