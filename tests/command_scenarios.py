"""Command-processor scenarios written once, run twice (STYLE §9): with fakes and on the real
broker and database. A `CommandDriver` delivers envelopes and reads back what they caused.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from events import Actor, ActorKind, Command, Envelope, Message, catalog
from events.persona import RegisterPersona
from events.plan import AiStep, ApprovePlan, DraftPlan, HumanStep, SubmitPlan
from events.project import ApprovalPolicy, CreateProject
from infra.db.command_status import CommandState

if TYPE_CHECKING:
    from infra.db.command_status import CommandStatus

ACTOR = Actor(kind=ActorKind.API_KEY, id="key-scenario")  # creates the projects: their owner
ALICE, BOB, CAROL = (Actor.of(f"key:{name}") for name in ("alice", "bob", "carol"))
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class CommandDriver(Protocol):
    """Delivers command envelopes to a processor and reads back their effects."""

    async def send(self, envelope: Envelope[Message]) -> None:
        """Deliver one envelope (again, if it was sent before)."""
        ...

    async def outcome(self, command_id: uuid.UUID) -> CommandStatus:
        """The command's final status (waits for it where processing is asynchronous)."""
        ...

    async def settle(self) -> None:
        """Wait until every delivery sent so far was handled (duplicates included)."""
        ...

    async def events_caused_by(self, command_id: uuid.UUID) -> list[Envelope[Message]]:
        """Every outbox envelope whose causation id is `command_id`, in outbox order."""
        ...

    async def register_person(self, principal_id: str) -> None:
        """Add `principal_id` to the people directory the processor reads."""
        ...


def command_envelope(
    data: Command,
    *,
    actor: Actor = ACTOR,
    correlation_id: uuid.UUID | None = None,
    traceparent: str | None = TRACEPARENT,
) -> Envelope[Message]:
    """A command as the ingress would publish it."""
    entry = catalog.entry_for(data)
    command_id = uuid.uuid4()
    return Envelope[Message](
        id=command_id,
        type=entry.type,
        version=entry.version,
        occurred_at=datetime.now(UTC),
        correlation_id=correlation_id or command_id,
        actor=actor,
        traceparent=traceparent,
        data=data,
    )


async def processed(
    driver: CommandDriver, data: Command, *, actor: Actor = ACTOR
) -> list[Envelope[Message]]:
    """Send a command, require `processed`, return its events (checked against the status)."""
    envelope = command_envelope(data, actor=actor)
    await driver.send(envelope)
    status = await driver.outcome(envelope.id)
    assert status.status is CommandState.PROCESSED, status.problem
    events = await driver.events_caused_by(envelope.id)
    assert [e.id for e in events] == list(status.result_event_ids)
    for event in events:
        assert event.causation_id == envelope.id
        assert event.correlation_id == envelope.correlation_id
        assert event.actor == envelope.actor
        assert event.traceparent is not None
        assert event.traceparent.split("-")[1] == TRACEPARENT.split("-")[1]  # same trace
    return events


async def approval_flow(driver: CommandDriver) -> None:
    """2-of-3 approval: events, envelopes and contiguous versions; a late vote is rejected."""
    persona_id, project_id, plan_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await processed(
        driver,
        RegisterPersona(
            persona_id=persona_id,
            name="Aiko",
            role="writer",
            provider="fake",
            model="fake-1",
            system_prompt="Write well.",
        ),
    )
    approvers = (ALICE.principal, BOB.principal, CAROL.principal)
    policy = ApprovalPolicy(approvers=approvers, required_approvals=2)
    created = await processed(
        driver, CreateProject(project_id=project_id, name="Launch", policy=policy)
    )
    steps = (
        AiStep(step_id=uuid.uuid4(), title="Draft", persona_id=persona_id, input="Write it"),
        HumanStep(
            step_id=uuid.uuid4(), title="Review", assignee=ALICE.principal, instructions="Read"
        ),
    )
    plan_events = [
        *await processed(
            driver, DraftPlan(plan_id=plan_id, project_id=project_id, title="Q3", steps=steps)
        ),
        *await processed(driver, SubmitPlan(plan_id=plan_id)),
        *await processed(driver, ApprovePlan(plan_id=plan_id), actor=ALICE),
        *await processed(driver, ApprovePlan(plan_id=plan_id), actor=BOB),
    ]
    assert [e.type for e in created] == ["ProjectCreated"]
    assert [e.type for e in plan_events] == [
        "PlanDrafted",
        "PlanSubmitted",
        "PlanApprovalRecorded",
        "PlanApprovalRecorded",
        "PlanApproved",
    ]
    assert {e.aggregate_id for e in plan_events} == {plan_id}
    assert [e.aggregate_version for e in plan_events] == [1, 2, 3, 4, 5]
    late = command_envelope(ApprovePlan(plan_id=plan_id), actor=CAROL)
    await driver.send(late)
    status = await driver.outcome(late.id)
    assert status.status is CommandState.REJECTED
    assert status.problem is not None
    assert status.problem["status"] == 409
    assert status.problem["code"] == "plan-not-submitted"
    assert await driver.events_caused_by(late.id) == []


async def redelivery_has_one_effect(driver: CommandDriver) -> None:
    """The same envelope delivered twice: one set of events, status processed."""
    policy = ApprovalPolicy(approvers=(ALICE.principal,), required_approvals=1)
    envelope = command_envelope(CreateProject(project_id=uuid.uuid4(), name="Once", policy=policy))
    await driver.send(envelope)
    await driver.send(envelope)
    await driver.settle()
    assert (await driver.outcome(envelope.id)).status is CommandState.PROCESSED
    assert [e.type for e in await driver.events_caused_by(envelope.id)] == ["ProjectCreated"]


async def rejection_is_decided_once(driver: CommandDriver) -> None:
    """A command naming no plan is rejected (422); its redelivery is not decided again."""
    envelope = command_envelope(SubmitPlan(plan_id=uuid.uuid4()))
    await driver.send(envelope)
    first = await driver.outcome(envelope.id)
    await driver.send(envelope)
    await driver.settle()
    again = await driver.outcome(envelope.id)
    assert first.status is CommandState.REJECTED
    assert first.problem is not None
    assert first.problem["status"] == 422
    assert first.problem["code"] == "plan-not-found"
    assert first.problem["type"] == "https://hisho.dev/problems/plan-not-found"
    assert again.updated_at == first.updated_at
    assert await driver.events_caused_by(envelope.id) == []


async def an_id_of_another_aggregate_type_is_rejected(driver: CommandDriver) -> None:
    """A new aggregate whose id is another type's: `aggregate-id-taken` (409), nothing kept."""
    policy = ApprovalPolicy(approvers=(ALICE.principal,), required_approvals=1)
    project_id = uuid.uuid4()
    await processed(driver, CreateProject(project_id=project_id, name="Taken", policy=policy))
    step = HumanStep(step_id=uuid.uuid4(), title="t", assignee=ALICE.principal, instructions="do")
    colliding: tuple[tuple[Command, str], ...] = (
        (DraftPlan(plan_id=project_id, project_id=project_id, title="T", steps=(step,)), "plan"),
        (
            RegisterPersona(
                persona_id=project_id,
                name="Aiko",
                role="writer",
                provider="fake",
                model="fake-1",
                system_prompt="Write well.",
            ),
            "persona",
        ),
    )
    for data, new_type in colliding:
        envelope = command_envelope(data)
        await driver.send(envelope)
        status = await driver.outcome(envelope.id)
        assert status.status is CommandState.REJECTED
        assert status.problem is not None
        assert status.problem["code"] == "aggregate-id-taken"
        assert status.problem["type"] == "https://hisho.dev/problems/aggregate-id-taken"
        assert status.problem["status"] == 409
        assert status.problem["detail"] == (
            f"{project_id} is the id of a project: a new {new_type} needs an id no aggregate has"
        )
        assert await driver.events_caused_by(envelope.id) == []
    # The project is untouched and usable: a plan of its own is drafted as usual.
    await processed(
        driver, DraftPlan(plan_id=uuid.uuid4(), project_id=project_id, title="T", steps=(step,))
    )


SCENARIOS = (
    approval_flow,
    redelivery_has_one_effect,
    rejection_is_decided_once,
    an_id_of_another_aggregate_type_is_rejected,
)
