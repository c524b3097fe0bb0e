"""The command acceptor with fakes: ids, idempotency, envelopes, trace context, failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest

from events import Actor, ActorKind, catalog
from events.envelope import body_sha256
from events.plan import SubmitPlan
from infra.telemetry import tracer_provider
from producers.ingress.accept import (
    BODY_HASH_HEADER,
    CommandAcceptor,
    CommandRequest,
    command_id_for,
)
from producers.ingress.ports import BrokerUnavailableError
from producers.ingress.problems import ProblemError
from tests.ingress_fakes import FakeCommandRecords, FakeIngressStore, FakePublisher

if TYPE_CHECKING:
    from producers.ingress.ports import OutgoingCommand

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ACTOR = Actor(kind=ActorKind.API_KEY, id="0123456789abcdef")
INBOUND = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _acceptor(
    publisher: FakePublisher, store: FakeIngressStore, records: FakeCommandRecords | None = None
) -> CommandAcceptor:
    return CommandAcceptor(
        publisher=publisher,
        store=store,
        records=records or FakeCommandRecords(),
        tracer=tracer_provider().get_tracer("test"),
        clock=lambda: NOW,
        idempotency_ttl=3600,
        accepted_ttl=3600,
    )


def _request(
    plan_id: UUID | None = None,
    *,
    key: str | None = None,
    correlation_id: UUID | None = None,
    traceparent: str | None = None,
) -> CommandRequest:
    return CommandRequest(
        entry=catalog.entry("SubmitPlan"),
        data=SubmitPlan(plan_id=plan_id or uuid4()),
        actor=ACTOR,
        caller=f"api_key:{ACTOR.id}",
        idempotency_key=key,
        correlation_id=correlation_id,
        traceparent=traceparent,
    )


def test_command_id_is_derived_from_caller_and_key_only_when_a_key_is_given() -> None:
    assert command_id_for("api_key:a", "k1") == command_id_for("api_key:a", "k1")
    assert command_id_for("api_key:a", "k1") != command_id_for("api_key:b", "k1")
    assert command_id_for("api_key:a", None) != command_id_for("api_key:a", None)


def test_body_hash_ignores_formatting_but_not_content() -> None:
    plan_id = uuid4()
    same = SubmitPlan.model_validate(json.loads(f'{{ "plan_id" : "{plan_id}" }}'))
    assert body_sha256("SubmitPlan", SubmitPlan(plan_id=plan_id)) == body_sha256("SubmitPlan", same)
    assert body_sha256("SubmitPlan", SubmitPlan(plan_id=uuid4())) != body_sha256("SubmitPlan", same)


async def test_envelope_carries_actor_correlation_trace_and_routing() -> None:
    publisher, store = FakePublisher(), FakeIngressStore()
    correlation = uuid4()
    accepted = await _acceptor(publisher, store).accept(
        _request(correlation_id=correlation, traceparent=INBOUND)
    )
    [sent] = publisher.published
    envelope = json.loads(sent.body)
    assert sent.routing_key == "SubmitPlan"
    assert sent.message_id == str(accepted.command_id) == envelope["id"]
    assert envelope["type"] == "SubmitPlan"
    assert envelope["version"] == 1
    assert envelope["actor"] == {"kind": "api_key", "id": ACTOR.id}  # `admin` only when held
    assert envelope["correlation_id"] == str(correlation)
    assert envelope["causation_id"] is None
    assert envelope["occurred_at"].startswith("2026-05-01T12:00:00")
    trace_id = INBOUND.split("-")[1]
    assert envelope["traceparent"].split("-")[1] == trace_id
    assert envelope["traceparent"] != INBOUND  # a child span of the caller's
    assert sent.headers["traceparent"] == envelope["traceparent"]
    assert sent.headers[BODY_HASH_HEADER] == body_sha256(
        "SubmitPlan", SubmitPlan(**envelope["data"])
    )
    assert store.markers[accepted.command_id] == "SubmitPlan"


async def test_without_headers_correlation_is_the_command_id_and_a_new_trace_starts() -> None:
    publisher = FakePublisher()
    accepted = await _acceptor(publisher, FakeIngressStore()).accept(_request())
    envelope = json.loads(publisher.published[0].body)
    assert envelope["correlation_id"] == str(accepted.command_id)
    version, trace_id, span_id, flags = envelope["traceparent"].split("-")
    assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
    assert int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) != 0


async def test_same_key_twice_publishes_once_and_answers_the_same_id() -> None:
    publisher, store = FakePublisher(), FakeIngressStore()
    acceptor, plan_id = _acceptor(publisher, store), uuid4()
    first = await acceptor.accept(_request(plan_id, key="k-1"))
    second = await acceptor.accept(_request(plan_id, key="k-1"))
    assert first.command_id == second.command_id
    assert (first.replayed, second.replayed) == (False, True)
    assert len(publisher.published) == 1


async def test_same_key_with_another_body_is_a_409_and_publishes_nothing_more() -> None:
    publisher, store = FakePublisher(), FakeIngressStore()
    acceptor = _acceptor(publisher, store)
    await acceptor.accept(_request(key="k-2"))
    with pytest.raises(ProblemError) as caught:
        await acceptor.accept(_request(key="k-2"))
    assert caught.value.problem.status == 409
    assert caught.value.problem.type.endswith("/idempotency-conflict")
    assert len(publisher.published) == 1


async def test_without_redis_the_same_key_still_gives_the_same_command_id() -> None:
    publisher, store = FakePublisher(), FakeIngressStore()
    store.down = True
    acceptor, plan_id = _acceptor(publisher, store), uuid4()
    first = await acceptor.accept(_request(plan_id, key="k-3"))
    second = await acceptor.accept(_request(plan_id, key="k-3"))
    assert first.command_id == second.command_id
    # Both were published: the processor's inbox drops the second (same message id).
    assert [m.message_id for m in publisher.published] == [str(first.command_id)] * 2


async def test_without_redis_the_processors_record_answers_a_reused_key() -> None:
    publisher, store, records = FakePublisher(), FakeIngressStore(), FakeCommandRecords()
    store.down = True
    acceptor, plan_id = _acceptor(publisher, store, records), uuid4()
    first = await acceptor.accept(_request(plan_id, key="k-6"))
    records.bodies[first.command_id] = body_sha256("SubmitPlan", SubmitPlan(plan_id=plan_id))
    again = await acceptor.accept(_request(plan_id, key="k-6"))
    with pytest.raises(ProblemError) as caught:
        await acceptor.accept(_request(uuid4(), key="k-6"))
    assert (again.command_id, again.replayed) == (first.command_id, True)
    assert caught.value.problem.status == 409
    assert caught.value.problem.type.endswith("/idempotency-conflict")
    # Processed once: neither the replay nor the conflicting body was published.
    assert [m.message_id for m in publisher.published] == [str(first.command_id)]


class RefusingPublisher(FakePublisher):
    """Records every attempt, then refuses it as the broker does when it takes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[str] = []
        self.refusing = True

    async def publish(self, command: OutgoingCommand) -> None:
        self.attempts.append(command.message_id)
        if self.refusing:
            raise BrokerUnavailableError("broker refused")
        self.published.append(command)


async def test_a_refused_publish_is_503_and_leaves_no_trace_for_the_retry() -> None:
    publisher, store = RefusingPublisher(), FakeIngressStore()
    acceptor, plan_id = _acceptor(publisher, store), uuid4()
    with pytest.raises(ProblemError) as caught:
        await acceptor.accept(_request(plan_id, key="k-4"))
    assert caught.value.problem.status == 503
    assert caught.value.problem.type.endswith("/broker-unavailable")
    assert caught.value.headers["Retry-After"] == "1"
    [refused] = publisher.attempts  # the 503 is the broker's refusal of a real attempt
    # Nothing says "accepted": no status marker, and the key is free again (a retry must not
    # be answered as a replay of a command that never reached the broker).
    assert store.markers == {}
    assert store.records == {}
    publisher.refusing = False
    retried = await acceptor.accept(_request(plan_id, key="k-4"))
    assert retried.replayed is False
    # The retry carries the refused attempt's id: had the refusal been wrong, the
    # processor's inbox would still apply the command once.
    assert publisher.attempts == [refused, str(retried.command_id)]
    assert [m.message_id for m in publisher.published] == [refused]
    assert store.markers == {retried.command_id: "SubmitPlan"}


async def test_an_unconfirmed_first_try_is_republished_with_the_same_id() -> None:
    publisher, store = FakePublisher(), FakeIngressStore()
    acceptor, plan_id = _acceptor(publisher, store), uuid4()
    command_id = command_id_for(f"api_key:{ACTOR.id}", "k-5")
    # A first attempt that claimed the key and died before its confirm was recorded.
    store.records[command_id] = f"{body_sha256('SubmitPlan', SubmitPlan(plan_id=plan_id))}:pending"
    accepted = await acceptor.accept(_request(plan_id, key="k-5"))
    assert accepted.command_id == command_id
    assert [m.message_id for m in publisher.published] == [str(command_id)]
