"""Parking records the command's failure first: `before_parking` and the processor's `on_park`
(`record_parked`, called by the framework's runner) with fakes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import pytest

from consumers.command_processor import CONSUMER
from consumers.parked_commands import parked_command, record_parked
from events import catalog
from events.catalog import partition_key
from events.envelope import body_sha256
from events.project import ApprovalPolicy, CreateProject
from infra.consumers import Runner
from infra.consumers.runtime import RuntimePolicy, Settlement, before_parking, settlement_for
from infra.db.command_status import CommandState
from infra.topology import ConsumerQueues
from tests.command_scenarios import command_envelope
from tests.consumer_support import FakeHeldMessages
from tests.fakes import FakeClock, FakeUnitOfWork
from tests.people_fakes import FakePersonDirectory

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage

    from infra.db.uow import UnitOfWork

QUEUES = ConsumerQueues(consumer="demo", bindings=("x.y",), retry_delays_ms=(100, 1_000))


@dataclass
class FakeIncoming:
    """The parts of an incoming message the parking path reads."""

    body: bytes
    message_id: str | None = None
    routing_key: str | None = "CreateProject"
    headers: dict[str, object] = field(default_factory=dict)


def incoming(body: bytes, message_id: str | None = None) -> AbstractIncomingMessage:
    return cast("AbstractIncomingMessage", FakeIncoming(body, message_id))


def processor(uow: FakeUnitOfWork) -> Runner:
    """The processor's runner over `uow` (its `on_park` is `record_parked`)."""
    deps = {"clock": FakeClock(), "people": FakePersonDirectory()}
    return Runner(CONSUMER, lambda: uow, held=FakeHeldMessages(uow.db), deps=deps)


def park(reason: str = "unexpected error: KeyError: 'x'") -> Settlement:
    return Settlement("park", "hisho.dead", "demo", reason, "KeyError", "demo")


def an_envelope_body() -> tuple[uuid.UUID, bytes]:
    policy = ApprovalPolicy(approvers=("key:a",), required_approvals=1)
    envelope = command_envelope(CreateProject(project_id=uuid.uuid4(), name="P", policy=policy))
    return envelope.id, catalog.encode(envelope)


async def test_a_message_is_parked_once_its_failure_is_recorded() -> None:
    seen: list[Settlement] = []

    async def on_park(raw: AbstractIncomingMessage, settlement: Settlement) -> None:
        seen.append(settlement)

    policy = RuntimePolicy(queues=QUEUES, on_park=on_park)
    settlement = park()
    assert await before_parking(incoming(b"{}"), settlement, policy) is settlement
    assert seen == [settlement]


async def test_a_parking_that_cannot_be_recorded_waits_in_the_last_delay_queue() -> None:
    async def on_park(raw: AbstractIncomingMessage, settlement: Settlement) -> None:
        raise ConnectionRefusedError("database down")

    policy = RuntimePolicy(queues=QUEUES, on_park=on_park)
    held = await before_parking(incoming(b"{}"), park(), policy)
    assert (held.action, held.exchange, held.routing_key) == ("retry", "hisho.retry", "demo.1000ms")
    assert held.reason == (
        "parking held back (ConnectionRefusedError: database down): unexpected error: KeyError: 'x'"
    )


async def test_with_no_delay_queue_an_unrecorded_parking_goes_back_to_the_queue() -> None:
    async def on_park(raw: AbstractIncomingMessage, settlement: Settlement) -> None:
        raise ConnectionRefusedError("database down")

    queues = ConsumerQueues(consumer="demo", bindings=("x.y",), retry_delays_ms=())
    with pytest.raises(ConnectionRefusedError):
        await before_parking(incoming(b"{}"), park(), RuntimePolicy(queues=queues, on_park=on_park))


async def test_a_retry_is_not_a_parking() -> None:
    calls: list[Settlement] = []

    async def on_park(raw: AbstractIncomingMessage, settlement: Settlement) -> None:
        calls.append(settlement)

    policy = RuntimePolicy(queues=QUEUES, on_park=on_park)
    retry = settlement_for(ConnectionError("blip"), policy, retries_done=0)
    assert await before_parking(incoming(b"{}"), retry, policy) is retry
    assert calls == []


def test_a_decodable_envelope_names_its_command_in_full() -> None:
    command_id, body = an_envelope_body()
    parked = parked_command(body, message_id=None, routing_key="CreateProject")
    assert parked is not None
    envelope = catalog.decode(body)
    assert (parked.id, parked.type) == (command_id, "CreateProject")
    assert parked.correlation_id == envelope.correlation_id
    assert parked.actor == envelope.actor
    assert parked.body_sha256 == body_sha256("CreateProject", envelope.data)


def test_an_invalid_envelope_still_names_its_id_and_type() -> None:
    command_id, body = an_envelope_body()
    doc = json.loads(body)
    doc["data"]["colour"] = "red"
    parked = parked_command(json.dumps(doc).encode(), message_id=None, routing_key="X")
    assert parked is not None
    assert (parked.id, parked.type, parked.body_sha256) == (command_id, "CreateProject", None)


def test_garbage_is_named_by_its_message_id_and_routing_key() -> None:
    message_id = uuid.uuid4()
    parked = parked_command(b"\x00not json{", str(message_id), routing_key="CreateProject")
    assert parked is not None
    assert (parked.id, parked.type) == (message_id, "CreateProject")


@pytest.mark.parametrize("message_id", [None, "not-a-uuid"])
def test_a_message_with_no_readable_id_names_no_command(message_id: str | None) -> None:
    assert parked_command(b'{"id": 7}', message_id, routing_key="CreateProject") is None


async def test_the_processor_parks_with_record_parked() -> None:
    assert CONSUMER.on_park is record_parked


async def test_record_parked_marks_the_command_failed_without_an_inbox_row() -> None:
    uow = FakeUnitOfWork()
    command_id, body = an_envelope_body()
    await processor(uow).parking(body, {}, None, "CreateProject", park())
    status = uow.statuses[command_id]
    assert status.status is CommandState.FAILED
    assert status.problem == {
        "type": "https://hisho.dev/problems/command-parked",
        "title": "Command parked",
        "status": 500,
        "detail": "unexpected error: KeyError: 'x'",
        "code": "command-parked",
        "error": "KeyError",
        "consumer": "demo",
    }
    assert uow.claimed == set()
    assert uow.envelopes == []
    # The processor is ordered: the parked command holds its aggregate until a re-drive.
    held = await FakeHeldMessages(uow.db).head(CONSUMER.name, partition_key(catalog.decode(body)))
    assert held is not None
    assert (held.message_id, held.parked, held.reason) == (command_id, True, park().reason)


async def test_record_parked_skips_a_message_with_no_command_id() -> None:
    uow = FakeUnitOfWork()
    await processor(uow).parking(b"garbage", {}, None, "CreateProject", park())
    assert uow.statuses == {}
    # no status, no held row (no key to hold): only the framework's record of the parking
    assert set(uow.db.tables) == {"parked_messages"}
    assert uow.claimed == set()


async def test_a_processor_parking_that_cannot_be_recorded_goes_back_to_the_queue() -> None:
    def down() -> UnitOfWork:
        raise ConnectionRefusedError("database down")

    uow = FakeUnitOfWork()
    runner = processor(uow)
    runner.unit = down
    assert runner.policy is not None
    assert runner.policy.on_park is not None
    _, body = an_envelope_body()
    with pytest.raises(ConnectionRefusedError):  # no delay queue: NACK_ON_ERROR requeues it
        await before_parking(incoming(body), park(), runner.policy)
    assert uow.statuses == {}
