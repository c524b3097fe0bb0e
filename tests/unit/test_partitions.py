"""The partition layout of ordered consumers, without a broker."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.partitions import PARTITION_SLOTS, PartitionedQueues, partition_slot

if TYPE_CHECKING:
    import uuid


def test_a_slot_is_the_crc32_of_the_key_and_does_not_change_between_processes() -> None:
    assert partition_slot("0b5e7a6c-2f51-4c8e-9a3e-1f2d3c4b5a69") == 44  # 628234284 % 64


@given(partitions=st.integers(min_value=1, max_value=PARTITION_SLOTS))
def test_every_slot_is_bound_to_exactly_one_partition(partitions: int) -> None:
    spec = PartitionedQueues(consumer="analytics", bindings=("plan.*",), partitions=partitions)
    bound = [
        binding["partition_slot"]
        for partition in range(partitions)
        for binding in spec.slot_bindings(partition)
    ]
    assert sorted(bound) == list(range(PARTITION_SLOTS))


@given(key=st.uuids(), partitions=st.integers(min_value=1, max_value=PARTITION_SLOTS))
def test_an_aggregate_goes_to_the_partition_bound_to_its_slot(
    key: uuid.UUID, partitions: int
) -> None:
    spec = PartitionedQueues(consumer="analytics", bindings=("plan.*",), partitions=partitions)
    partition = spec.partition_of(str(key))
    slots = {b["partition_slot"] for b in spec.slot_bindings(partition)}
    assert partition_slot(str(key)) in slots


def test_partitions_are_named_after_the_consumer() -> None:
    spec = PartitionedQueues(consumer="analytics", bindings=("plan.*",), partitions=3)
    assert spec.queues == ("hisho.analytics.p0", "hisho.analytics.p1", "hisho.analytics.p2")
    assert spec.exchange == "hisho.analytics.partitioned"
    assert spec.parked == "hisho.analytics.parked"
    assert spec.queue_arguments()["x-single-active-consumer"] is True


@pytest.mark.parametrize(
    ("consumer", "bindings", "partitions"),
    [("Analytics", ("plan.*",), 2), ("analytics", (), 2), ("analytics", ("plan.*",), 65)],
)
def test_a_bad_declaration_is_refused(
    consumer: str, bindings: tuple[str, ...], partitions: int
) -> None:
    with pytest.raises(ValueError, match=r"consumer name|routing pattern|partitions"):
        PartitionedQueues(consumer=consumer, bindings=bindings, partitions=partitions)


def test_a_stored_message_is_keyed_by_its_target_or_aggregate_and_never_fails() -> None:
    from events.catalog import stored_partition_key  # noqa: PLC0415

    plan, event_id = "6f1c9b1e-0000-4000-8000-000000000001", "6f1c9b1e-0000-4000-8000-0000000000aa"
    assert stored_partition_key("SubmitPlan", None, {"plan_id": plan}, event_id) == plan
    assert stored_partition_key("PlanSubmitted", plan, {}, event_id) == plan
    # A type this build does not know, or a command whose target cannot be read: by its
    # aggregate, else its own id (a row the relay cannot route must not stop it).
    assert stored_partition_key("FromTheFuture", plan, {}, event_id) == plan
    assert stored_partition_key("FromTheFuture", None, {}, event_id) == event_id
    assert stored_partition_key("SubmitPlan", None, {"plan_id": "nope"}, event_id) == event_id
    assert stored_partition_key("SubmitPlan", None, {}, event_id) == event_id
