"""Envelopes as the outbox builds them, and the in-memory unit of work, with no services."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from domain.project import Project
from events import Actor, ActorKind
from events.persona import RetirePersona
from events.project import ApprovalPolicy, CreateProject, ProjectCreated
from infra.db.command_status import CommandState, record_status
from infra.db.outbox import command_envelope, envelope_from_row, event_envelope, outbox_row
from infra.db.tables import CONSUMER_HELD, OUTBOX
from infra.db.uow import AlreadyAppliedError, ConcurrencyError, HeldError
from infra.message_context import MessageContext
from infra.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE
from tests.fakes import FakeClock, FakeDatabase, FakeUnitOfWork

if TYPE_CHECKING:
    from events import Envelope, Message
    from infra.db.uow import UnitOfWork

POLICY = ApprovalPolicy(approvers=("key:ana",), required_approvals=1)
ANA = Actor(kind=ActorKind.USER, id="ana")
NOW = FakeClock()()


def outbox_values(envelope: Envelope[Message]) -> dict[str, Any]:
    return OUTBOX.record(outbox_row(envelope))


def _created() -> ProjectCreated:
    return ProjectCreated(
        project_id=uuid.uuid4(), name="Launch", owner=ANA.principal, policy=POLICY
    )


def _create() -> CreateProject:
    return CreateProject(project_id=uuid.uuid4(), name="Launch", policy=POLICY)


def test_event_envelope_takes_type_version_and_aggregate_from_the_catalog() -> None:
    clock, context, aggregate_id = FakeClock(), MessageContext.start(ANA), uuid.uuid4()
    envelope = event_envelope(
        _created(), aggregate_id=aggregate_id, aggregate_version=2, context=context, clock=clock.now
    )
    assert (envelope.type, envelope.version, envelope.occurred_at) == (
        "ProjectCreated",
        2,
        clock.now(),
    )
    assert (envelope.aggregate_type, envelope.aggregate_id, envelope.aggregate_version) == (
        "project",
        aggregate_id,
        2,
    )
    assert envelope.correlation_id == context.correlation_id
    assert envelope.position is None
    values = outbox_values(envelope)
    assert (values["exchange"], values["routing_key"]) == (EVENTS_EXCHANGE, "project.created")


def test_every_envelope_gets_a_new_id() -> None:
    context = MessageContext.start(ANA)
    ids = {command_envelope(_create(), context=context).id for _ in range(50)}
    assert len(ids) == 50


def test_command_envelope_is_addressed_to_the_commands_exchange_without_aggregate() -> None:
    envelope = command_envelope(_create(), context=MessageContext.start(ANA))
    assert (envelope.aggregate_type, envelope.aggregate_id, envelope.aggregate_version) == (
        None,
        None,
        None,
    )
    values = outbox_values(envelope)
    assert (values["exchange"], values["routing_key"]) == (COMMANDS_EXCHANGE, "CreateProject")


def test_events_and_commands_cannot_be_swapped() -> None:
    context = MessageContext.start(ANA)
    with pytest.raises(TypeError, match="use add_command"):
        event_envelope(_create(), aggregate_id=uuid.uuid4(), aggregate_version=1, context=context)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="use add_event"):
        command_envelope(_created(), context=context)  # type: ignore[arg-type]


def test_traceparent_defaults_to_the_current_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    context = MessageContext.start(ANA)
    assert command_envelope(_create(), context=context).traceparent is None
    with tracer.start_as_current_span("handle") as span:
        envelope = command_envelope(_create(), context=context)
        ids = span.get_span_context()
    assert (
        envelope.traceparent == f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
    )


def test_caused_by_continues_the_correlation_and_names_the_cause() -> None:
    cause = command_envelope(
        _create(),
        context=MessageContext(
            correlation_id=uuid.uuid4(),
            actor=ANA,
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    )
    context = MessageContext.caused_by(cause)
    assert (context.correlation_id, context.causation_id, context.actor) == (
        cause.correlation_id,
        cause.id,
        ANA,
    )
    assert context.traceparent == cause.traceparent


def test_a_raw_asyncpg_row_with_json_text_becomes_the_same_envelope() -> None:
    envelope = event_envelope(
        _created(),
        aggregate_id=uuid.uuid4(),
        aggregate_version=1,
        context=MessageContext.start(ANA),
    )
    row = outbox_values(envelope) | {"position": 7}  # JSONB as JSON text
    assert envelope_from_row(row) == envelope.model_copy(update={"position": 7})


async def test_fake_unit_of_work_keeps_only_committed_blocks() -> None:
    uow: UnitOfWork = FakeUnitOfWork()
    message_id, context = uuid.uuid4(), MessageContext.start(ANA)
    async with uow:
        assert await uow.inbox.claim("approval", message_id)
        await uow.outbox.add_command(_create(), context=context)
    async with uow:
        assert await uow.inbox.claim("approval", message_id)
        command_id = await uow.outbox.add_command(_create(), context=context)
        record_status(uow, message_id, type="CreateProject", status=CommandState.PROCESSED)
        await uow.commit()
    async with uow:
        assert not await uow.inbox.claim("approval", message_id)
    assert isinstance(uow, FakeUnitOfWork)
    assert [e.id for e in uow.envelopes] == [command_id]
    assert uow.claimed == {("approval", message_id)}
    assert uow.statuses[message_id].status is CommandState.PROCESSED
    assert uow.commits == 1


async def test_fake_unit_of_work_refuses_a_duplicate_found_at_commit() -> None:
    db, message_id = FakeDatabase(), uuid.uuid4()
    first, second = FakeUnitOfWork(db=db), FakeUnitOfWork(db=db)
    async with first, second:
        assert await first.inbox.claim("approval", message_id)
        assert await second.inbox.claim("approval", message_id)  # not known yet
        record_status(second, message_id, type="CreateProject", status=CommandState.REJECTED)
        await first.commit()
        with pytest.raises(AlreadyAppliedError):
            await second.commit()
    assert second.statuses == {}
    assert (first.commits, second.commits) == (1, 0)


async def test_fake_unit_of_work_refuses_a_stale_read_at_commit() -> None:
    db, project_id = FakeDatabase(), uuid.uuid4()
    context = MessageContext.start(ANA)
    async with FakeUnitOfWork(db=db, context=context) as setup:
        setup.aggregates.projects.add(
            Project.create(project_id=project_id, name="P", policy=POLICY, by=ANA, at=NOW)
        )
        await setup.commit()
    first, second = FakeUnitOfWork(db=db, context=context), FakeUnitOfWork(db=db, context=context)
    async with first, second:
        for unit, approver in ((first, "key:b"), (second, "key:c")):
            project = await unit.aggregates.projects.require(project_id)
            project.change_policy(
                ApprovalPolicy(approvers=(approver,), required_approvals=1), by=ANA, at=NOW
            )
            await unit.save_aggregates(context)
        await first.commit()
        with pytest.raises(ConcurrencyError, match="moved on from 1"):
            await second.commit()
    version, state = db.states[("project", project_id)]
    assert (version, state["policy"]["approvers"]) == (2, ["key:b"])
    assert [e.aggregate_version for e in db.envelopes] == [1, 2]


async def test_fake_unit_of_work_needs_a_context_for_pending_events() -> None:
    uow = FakeUnitOfWork()
    async with uow:
        uow.aggregates.projects.add(
            Project.create(project_id=uuid.uuid4(), name="P", policy=POLICY, by=ANA, at=NOW)
        )
        with pytest.raises(RuntimeError, match="context"):
            await uow.commit()
    assert uow.envelopes == []


async def test_fake_unit_of_work_applies_the_status_tables_rule() -> None:
    uow, command_id = FakeUnitOfWork(), uuid.uuid4()
    for state in (CommandState.ACCEPTED, CommandState.PROCESSED, CommandState.FAILED):
        async with uow:
            record_status(uow, command_id, type="CreateProject", status=state, actor=ANA)
            await uow.commit()
    status = uow.statuses[command_id]
    assert (status.status, status.actor) == (CommandState.PROCESSED, ANA)
    assert status.accepted_at == uow.clock()


async def test_fake_unit_of_work_holds_a_message_behind_a_held_one() -> None:
    uow, first, later = FakeUnitOfWork(), uuid.uuid4(), uuid.uuid4()
    async with uow:
        for message_id in (first, later):
            uow.rows.add(CONSUMER_HELD, ("c", "k", message_id, True, "test", b"", "{}"))
        await uow.commit()
    with pytest.raises(HeldError) as refused:  # noqa: PT012  (the block is what is under test)
        async with uow:
            uow.hold_guard("c", "k", later)
            await uow.commit()
    assert refused.value.blocker == first
    for message_id in (first, later):
        async with uow:
            uow.hold_guard("c", "k", message_id)
            await uow.commit()
    assert uow.db.table(CONSUMER_HELD) == []


def test_an_outbox_row_carries_its_kind_and_the_payload_project() -> None:
    context = MessageContext.start(ANA)
    created = _created()
    event = event_envelope(
        created, aggregate_id=created.project_id, aggregate_version=1, context=context
    )
    command = command_envelope(_create(), context=context)
    persona = command_envelope(
        RetirePersona(persona_id=uuid.uuid4(), reason="done"), context=context
    )
    assert (outbox_values(event)["kind"], outbox_values(event)["project_id"]) == (
        "event",
        created.project_id,
    )
    assert outbox_values(command)["kind"] == "command"
    assert outbox_values(persona)["project_id"] is None
