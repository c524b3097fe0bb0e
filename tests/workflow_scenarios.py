"""The framework's four scenarios for the workflow consumer, written once, run on two backends.

Each scenario gets a `Backend` (fakes: `FakeBackend`; the real broker and database:
`tests/integration/test_workflow_consumer.py`) running the workflow consumer with `failures`
injected in front of its handlers, and delivers `PlanApproved` events. The effect of one is
the `StartWorkflow` command it writes to the outbox (caused by the event, by
`system:workflow`).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from consumers.workflow import CONSUMER
from domain.workflow import workflow_id_for
from events import Actor, Envelope, Message
from events.plan import PlanApproved
from events.workflow import StartWorkflow
from infra.consumers import Consumer, Runner
from infra.consumers.runner import REDRIVE_HEADER
from tests.consumer_support import Failures, FakeHeldMessages, deliver_with_retries
from tests.fakes import FakeDatabase, FakeUnitOfWork

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from infra.db.uow import UnitOfWork

ACTOR = Actor.system("workflow")


def workflow_consumer(failures: Failures, name: str = "workflow") -> Consumer:
    """The workflow consumer (its real handlers), with `failures` checked before each."""

    def failing(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def handle(envelope: Envelope[Any], uow: UnitOfWork) -> None:
            failures.check(envelope.id)
            await handler(envelope, uow)

        return handle

    handlers = {model: failing(handler) for model, handler in CONSUMER.handlers.items()}
    return replace(CONSUMER, name=name, handlers=handlers, attempts=3)


def plan_approved(plan_id: uuid.UUID | None = None) -> Envelope[Message]:
    """A plan's `PlanApproved`, as the relay would publish it."""
    plan_id = plan_id or uuid.uuid4()
    return Envelope[Message](
        id=uuid.uuid4(),
        type="PlanApproved",
        version=2,
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        actor=Actor.of("key:ana"),
        aggregate_type="plan",
        aggregate_id=plan_id,
        aggregate_version=3,
        data=PlanApproved(
            plan_id=plan_id,
            project_id=uuid.uuid4(),
            title="Launch",
            submitted_by="key:sam",
            approvers=("key:ana",),
            auto=False,
        ),
    )


class Backend(Protocol):
    """The workflow consumer running somewhere: deliver to it, read what it sent."""

    failures: Failures

    async def deliver(self, envelope: Envelope[Message]) -> None:
        """Deliver once (the backend retries, delays or parks as the framework does)."""
        ...

    async def sent(self, cause: Envelope[Message], count: int) -> list[Envelope[Message]]:
        """The commands caused by `cause`, once `count` are there (then a little longer)."""
        ...

    async def parked_reason(self, envelope: Envelope[Message]) -> str:
        """The parking reason of `envelope` (waits for it to be parked)."""
        ...

    async def redrive(self, envelope: Envelope[Message]) -> None:
        """Send the parked `envelope` back to the consumer, as an operator does."""
        ...


def _started_workflow(cause: Envelope[Message], sent: list[Envelope[Message]]) -> None:
    assert len(sent) == 1, sent
    (command,) = sent
    assert isinstance(cause.data, PlanApproved)
    plan_id = cause.data.plan_id
    assert command.data == StartWorkflow(workflow_id=workflow_id_for(plan_id), plan_id=plan_id)
    assert command.actor == ACTOR  # not the approver: hisho's workflow consumer sends it
    assert (command.causation_id, command.correlation_id) == (cause.id, cause.correlation_id)


async def redelivery_has_one_effect(backend: Backend) -> None:
    event = plan_approved()
    for _ in range(3):  # a second publish, a redelivery: the same message id
        await backend.deliver(event)
    _started_workflow(event, await backend.sent(event, 1))


async def transient_failure_is_retried_to_one_effect(backend: Backend) -> None:
    event = plan_approved()
    backend.failures.transient[event.id] = 2
    await backend.deliver(event)
    _started_workflow(event, await backend.sent(event, 1))
    assert backend.failures.calls[event.id] == 3


async def poison_is_parked_while_later_ones_flow(backend: Backend) -> None:
    poison, later = plan_approved(), plan_approved()
    backend.failures.poison.add(poison.id)
    await backend.deliver(poison)
    await backend.deliver(later)
    _started_workflow(later, await backend.sent(later, 1))
    reason = await backend.parked_reason(poison)
    assert reason == f"unexpected error: ValueError: poison {poison.id}"
    assert await backend.sent(poison, 0) == []


async def redrive_after_the_fix_has_one_effect(backend: Backend) -> None:
    event = plan_approved()
    backend.failures.poison.add(event.id)
    await backend.deliver(event)
    await backend.parked_reason(event)
    backend.failures.poison.clear()  # the cause is fixed
    await backend.redrive(event)
    _started_workflow(event, await backend.sent(event, 1))


SCENARIOS = (
    redelivery_has_one_effect,
    transient_failure_is_retried_to_one_effect,
    poison_is_parked_while_later_ones_flow,
    redrive_after_the_fix_has_one_effect,
)


class FakeBackend:
    """The consumer's framework runner on the one fake (no broker): `Backend`."""

    def __init__(self) -> None:
        self.failures = Failures()
        self.db = FakeDatabase()
        self.runner = Runner(
            workflow_consumer(self.failures),
            lambda: FakeUnitOfWork(db=self.db),
            held=FakeHeldMessages(self.db),
        )
        self.reasons: dict[uuid.UUID, str] = {}

    async def deliver(
        self, envelope: Envelope[Message], headers: dict[str, Any] | None = None
    ) -> None:
        """Deliver with the runtime's retries; a parked settlement's reason is kept."""
        outcome = await deliver_with_retries(self.runner, envelope, headers)
        reason = getattr(outcome, "reason", None)
        if reason is not None:
            self.reasons[envelope.id] = reason

    async def sent(self, cause: Envelope[Message], count: int) -> list[Envelope[Message]]:
        """Commands caused by `cause` (the fake is synchronous: they are there or never)."""
        found = [e for e in self.db.envelopes if e.causation_id == cause.id]
        assert len(found) >= count, found
        return found

    async def parked_reason(self, envelope: Envelope[Message]) -> str:
        """The reason it was parked with."""
        return self.reasons[envelope.id]

    async def redrive(self, envelope: Envelope[Message]) -> None:
        """Deliver it again as a re-driven copy."""
        await self.deliver(envelope, {REDRIVE_HEADER: self.runner.consumer.name})
