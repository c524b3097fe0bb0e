"""The command processor's application logic with an in-memory unit of work.

Commands go through the framework's runner (`infra.consumers.Runner` with the processor's
`CONSUMER`), as on the broker: inbox claim, `handle_command`, commit, the recorded refusal.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, cast

import pytest

from consumers.command_processor import CONSUMER, HANDLERS, handle_command, problem_for
from domain.errors import CONFLICT, UNPROCESSABLE, DomainError
from domain.workflow import task_id_for
from events import Actor, Envelope, InvalidMessageError, Message, catalog
from events.envelope import body_sha256
from events.notification import NotificationChannel, NotificationDropped, SendNotification
from events.plan import AiStep, ApprovePlan, DraftPlan, HumanStep, SubmitPlan
from events.project import AddProjectMember, ApprovalPolicy, CreateProject, ProjectCreated
from events.project import ChangeApprovalPolicy as ChangePolicy
from events.workflow import BeginExecution, CancelWorkflow, StartWorkflow
from infra.consumers import Outcome, Runner
from infra.consumers.runtime import call_with_retries
from infra.db.command_status import CommandState
from infra.db.repositories import AggregateExistsError, AggregateNotFoundError, ConcurrencyError
from infra.message_context import MessageContext
from tests.catalog_scenarios import CATALOG_SCENARIOS
from tests.command_scenarios import ACTOR, SCENARIOS, command_envelope
from tests.consumer_support import FakeHeldMessages
from tests.fakes import FakeClock, FakeDatabase, FakeUnitOfWork
from tests.people_fakes import FakePersonDirectory
from tests.unit.test_domain_errors import CASES as DOMAIN_CASES
from tests.unit.test_domain_errors import _raised

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from events import CatalogEntry, Command
    from infra.db.command_status import CommandStatus
    from infra.db.uow import UnitOfWork
    from tests.command_scenarios import CommandDriver


def processor_runner(db: FakeDatabase, unit: Callable[[], UnitOfWork]) -> Runner:
    """The processor's runner over fakes, with its policy (retries, parking hooks)."""
    deps = {"clock": FakeClock(), "people": FakePersonDirectory()}
    return Runner(CONSUMER, unit, held=FakeHeldMessages(db), deps=deps)


class FakeDriver:
    """Delivers commands through the processor's runner to one in-memory unit of work.

    `uow` is the unit every delivery uses (one block at a time); its clock is the processor's.
    """

    def __init__(self) -> None:
        self.uow = FakeUnitOfWork()
        self.people = FakePersonDirectory()
        self.runner = Runner(
            CONSUMER,
            lambda: self.uow,
            held=FakeHeldMessages(self.uow.db),
            deps={
                "clock": lambda: self.uow.clock(),  # noqa: PLW0108  (the current unit's)
                "people": self.people,
            },
        )
        self.outcomes: list[Outcome] = []

    async def send(self, envelope: Envelope[Message]) -> None:
        body = catalog.encode(envelope)
        self.outcomes.append(await self.runner.deliver(envelope, body, {}))

    async def outcome(self, command_id: uuid.UUID) -> CommandStatus:
        return self.uow.statuses[command_id]

    async def settle(self) -> None:
        return None

    async def events_caused_by(self, command_id: uuid.UUID) -> list[Envelope[Message]]:
        return [e for e in self.uow.envelopes if e.causation_id == command_id]

    async def register_person(self, principal_id: str) -> None:
        self.people.add(principal_id)


class TickingFakeDriver(FakeDriver):
    """A second passes between two commands, as it does (and more) on real servers."""

    async def send(self, envelope: Envelope[Message]) -> None:
        self.uow.clock.advance(timedelta(seconds=1))
        await super().send(envelope)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_scenario_with_fakes(scenario: Callable[[CommandDriver], Awaitable[None]]) -> None:
    await scenario(FakeDriver())


OWNER = ACTOR.principal  # creates the projects, approves and works their human tasks
SYSTEM = Actor.system("tests")


async def send(driver: FakeDriver, data: Command, *, actor: Actor = ACTOR) -> Envelope[Message]:
    envelope = command_envelope(data, actor=actor)
    await driver.send(envelope)
    return envelope


def policy(*approvers: str, required: int = 1) -> ApprovalPolicy:
    return ApprovalPolicy(approvers=approvers, required_approvals=required)


async def test_redelivery_is_acknowledged_as_duplicate_and_commits_nothing() -> None:
    driver = FakeDriver()
    envelope = await send(
        driver, CreateProject(project_id=uuid.uuid4(), name="P", policy=policy(OWNER))
    )
    commits = driver.uow.commits
    await driver.send(envelope)
    assert driver.outcomes == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert driver.uow.commits == commits
    assert len(driver.uow.envelopes) == 1


async def test_the_status_names_the_body_it_is_for_as_the_ingress_hashes_it() -> None:
    driver = FakeDriver()
    data = CreateProject(project_id=uuid.uuid4(), name="P", policy=policy(OWNER))
    envelope = await send(driver, data)
    # The ingress hashes the body it validated; the processor, the body it decoded.
    as_posted = CreateProject.model_validate_json(data.model_dump_json())
    assert driver.uow.statuses[envelope.id].body_sha256 == body_sha256("CreateProject", as_posted)
    assert body_sha256("CreateProject", as_posted) != body_sha256(
        "CreateProject", data.model_copy(update={"name": "Q"})
    )


async def test_domain_error_is_recorded_as_rejected_with_the_inbox_row() -> None:
    driver = FakeDriver()
    project_id = uuid.uuid4()
    await send(driver, CreateProject(project_id=project_id, name="P", policy=policy(OWNER)))
    again = await send(driver, CreateProject(project_id=project_id, name="P", policy=policy(OWNER)))
    status = driver.uow.statuses[again.id]
    assert driver.outcomes[-1] is Outcome.REJECTED
    assert status.status is CommandState.REJECTED
    assert status.problem == {
        "type": "https://hisho.dev/problems/project-exists",
        "title": "Project exists",
        "status": 409,
        "detail": f"project {project_id} exists",
        "code": "project-exists",
    }
    assert status.correlation_id == again.correlation_id
    assert status.actor == again.actor
    assert ("command_processor", again.id) in driver.uow.claimed
    assert [e.type for e in driver.uow.envelopes] == ["ProjectCreated"]


async def test_rejected_command_leaves_no_partial_state() -> None:
    driver = FakeDriver()
    project_id, plan_id = uuid.uuid4(), uuid.uuid4()
    ghost = AiStep(step_id=uuid.uuid4(), title="t", persona_id=uuid.uuid4(), input="x")
    await send(driver, CreateProject(project_id=project_id, name="P", policy=policy(OWNER)))
    draft = DraftPlan(plan_id=plan_id, project_id=project_id, title="T", steps=(ghost,))
    envelope = await send(driver, draft)
    assert driver.uow.statuses[envelope.id].problem == {
        "type": "https://hisho.dev/problems/persona-not-found",
        "title": "Persona not found",
        "status": 422,
        "detail": f"no persona {ghost.persona_id}",
        "code": "persona-not-found",
    }
    assert ("plan", plan_id) not in driver.uow.states


async def test_events_continue_the_command_correlation_and_the_client_correlation_id() -> None:
    driver = FakeDriver()
    story = uuid.uuid4()
    data = CreateProject(project_id=uuid.uuid4(), name="P", policy=policy(OWNER))
    envelope = command_envelope(data, correlation_id=story)
    await driver.send(envelope)
    (event,) = driver.uow.envelopes
    assert event.correlation_id == story
    assert event.causation_id == envelope.id
    assert event.aggregate_type == "project"
    assert event.aggregate_version == 1
    assert isinstance(event.data, ProjectCreated)


async def test_state_rows_hold_status_and_parent_ids_as_strings() -> None:
    driver = FakeDriver()
    project_id, plan_id = uuid.uuid4(), uuid.uuid4()
    step = HumanStep(step_id=uuid.uuid4(), title="t", assignee=OWNER, instructions="do")
    await send(driver, CreateProject(project_id=project_id, name="P", policy=policy(OWNER)))
    await send(driver, DraftPlan(plan_id=plan_id, project_id=project_id, title="T", steps=(step,)))
    version, state = driver.uow.states[("plan", plan_id)]
    assert version == 1
    assert state["status"] == "draft"
    assert state["project_id"] == str(project_id)
    assert state["id"] == str(plan_id)


async def submitted_plan(
    driver: FakeDriver, *, approvers: tuple[str, ...] = (OWNER,), required: int = 1, steps: int = 1
) -> uuid.UUID:
    project_id, plan_id = uuid.uuid4(), uuid.uuid4()
    human = tuple(
        HumanStep(step_id=uuid.uuid4(), title=f"s{i}", assignee=OWNER, instructions="do")
        for i in range(steps)
    )
    rule = policy(*approvers, required=required)
    await send(driver, CreateProject(project_id=project_id, name="P", policy=rule))
    await send(driver, DraftPlan(plan_id=plan_id, project_id=project_id, title="T", steps=human))
    await send(driver, SubmitPlan(plan_id=plan_id))
    return plan_id


async def approved_plan(driver: FakeDriver, steps: int) -> uuid.UUID:
    plan_id = await submitted_plan(driver, steps=steps)
    await send(driver, ApprovePlan(plan_id=plan_id))
    return plan_id


async def test_start_workflow_saves_workflow_then_one_task_per_step() -> None:
    driver = FakeDriver()
    plan_id, workflow_id = await approved_plan(driver, 2), uuid.uuid4()
    envelope = await send(driver, StartWorkflow(workflow_id=workflow_id, plan_id=plan_id))
    events = [e for e in driver.uow.envelopes if e.causation_id == envelope.id]
    assert [e.type for e in events] == [
        "PlanWorkflowStarted",
        "WorkflowStarted",
        "TaskCreated",
        "TaskCreated",
    ]
    plan_state = driver.uow.states[("plan", plan_id)][1]
    task_ids = [task_id_for(workflow_id, uuid.UUID(s["step_id"])) for s in plan_state["steps"]]
    assert [e.aggregate_id for e in events[2:]] == task_ids
    assert all(driver.uow.states[("task", t)][1]["status"] == "pending" for t in task_ids)


async def test_begin_execution_queues_tasks_and_cancel_cancels_unfinished_ones() -> None:
    driver = FakeDriver()
    plan_id, workflow_id = await approved_plan(driver, 2), uuid.uuid4()
    await send(driver, StartWorkflow(workflow_id=workflow_id, plan_id=plan_id))
    begun = await send(driver, BeginExecution(workflow_id=workflow_id))
    cancelled = await send(driver, CancelWorkflow(workflow_id=workflow_id, reason="stop"))
    types = [e.type for e in driver.uow.envelopes if e.causation_id == begun.id]
    assert types == ["WorkflowPhaseChanged", "TaskQueued", "TaskQueued"]
    types = [e.type for e in driver.uow.envelopes if e.causation_id == cancelled.id]
    assert types == ["WorkflowCancelled", "TaskCancelled", "TaskCancelled"]


async def test_repeated_dedup_key_is_processed_without_a_second_notification() -> None:
    driver = FakeDriver()

    def notify() -> SendNotification:
        return SendNotification(
            notification_id=uuid.uuid4(),
            channel=NotificationChannel.IN_APP,
            recipient="key:alice",
            subject="Hi",
            body="Hello",
            dedup_key=f"k-{key}",
        )

    key = uuid.uuid4()
    driver.people.add("key:alice")
    first = await send(driver, notify(), actor=SYSTEM)
    second = await send(driver, notify(), actor=SYSTEM)
    assert driver.outcomes == [Outcome.APPLIED, Outcome.APPLIED]
    assert [e.type for e in driver.uow.envelopes] == ["NotificationRequested"]
    assert driver.uow.statuses[first.id].result_event_ids
    assert driver.uow.statuses[second.id].result_event_ids == ()


def an_event_envelope(driver: FakeDriver) -> Envelope[Message]:
    event = ProjectCreated(project_id=uuid.uuid4(), name="P", owner=OWNER, policy=policy(OWNER))
    return Envelope[Message](
        id=uuid.uuid4(),
        type="ProjectCreated",
        version=2,
        occurred_at=driver.uow.clock(),
        correlation_id=uuid.uuid4(),
        actor=ACTOR,
        data=event,
    )


async def test_an_event_sent_as_a_command_is_a_contract_error() -> None:
    driver = FakeDriver()
    envelope = an_event_envelope(driver)
    async with driver.uow:
        with pytest.raises(InvalidMessageError, match="not a command"):
            await handle_command(envelope, driver.uow, clock=driver.uow.clock, people=driver.people)
    with pytest.raises(InvalidMessageError, match="not handled by command_processor"):
        await driver.send(envelope)  # the processor has no handler for it: parked as invalid
    assert driver.uow.commits == 0
    assert driver.uow.claimed == set()


async def test_saving_a_stale_aggregate_raises_concurrency_error() -> None:
    db = FakeDatabase()
    driver = FakeDriver()
    driver.uow = FakeUnitOfWork(db=db)
    project_id = uuid.uuid4()
    envelope = await send(
        driver, CreateProject(project_id=project_id, name="P", policy=policy(OWNER))
    )
    first, second = FakeUnitOfWork(db=db), FakeUnitOfWork(db=db)
    context = MessageContext.caused_by(envelope)
    async with first, second:
        mine = await first.aggregates.projects.require(project_id)
        theirs = await second.aggregates.projects.require(project_id)
        mine.change_policy(policy("key:b"), by=ACTOR, at=first.clock())
        theirs.change_policy(policy("key:c"), by=ACTOR, at=second.clock())
        await first.save_aggregates(context)
        await first.commit()
        with pytest.raises(ConcurrencyError, match="moved on from 1"):
            await second.save_aggregates(context)
    assert db.states[("project", project_id)][1]["policy"]["approvers"] == ["key:b"]


class RacedUnitOfWork(FakeUnitOfWork):
    """Lets a competing command commit between this unit's reads and its save (once)."""

    def __init__(self, db: FakeDatabase, competitor: Callable[[], Awaitable[object]]) -> None:
        super().__init__(db=db)
        self._competitor = competitor

    async def save_aggregates(self, context: MessageContext) -> list[uuid.UUID]:
        await self._competitor()
        return await super().save_aggregates(context)


async def test_a_version_conflict_is_retried_with_a_fresh_unit_of_work() -> None:
    db = FakeDatabase()
    driver = FakeDriver()
    driver.uow = FakeUnitOfWork(db=db)
    plan_id = await submitted_plan(driver, approvers=("key:a", "key:b", "key:c"), required=3)
    rival = command_envelope(ApprovePlan(plan_id=plan_id), actor=Actor.of("key:b"))
    mine = command_envelope(ApprovePlan(plan_id=plan_id), actor=Actor.of("key:a"))
    rivals = processor_runner(db, lambda: FakeUnitOfWork(db=db))
    raced = RacedUnitOfWork(db, lambda: rivals.apply(rival))
    units: Iterator[UnitOfWork] = iter([raced, FakeUnitOfWork(db=db)])
    runner = processor_runner(db, lambda: next(units))
    assert runner.policy is not None
    body = catalog.encode(mine)
    outcome = await call_with_retries(lambda: runner.deliver(mine, body, {}), runner.policy)
    assert outcome is Outcome.APPLIED
    version, state = db.states[("plan", plan_id)]
    assert state["approvals"] == ["key:b", "key:a"]
    assert version == 4  # drafted, submitted, two approvals: no lost update
    assert next(units, None) is None  # the conflict was retried with the second, fresh unit


def test_every_catalog_command_has_exactly_one_handler() -> None:
    commands = {e.model for e in catalog.entries() if e.kind == "command"}
    assert set(HANDLERS) == commands


def _problem_cases() -> list[tuple[str, DomainError, int]]:
    raised = [(code, _raised(action), status) for code, action, status in DOMAIN_CASES]
    unknown, taken = uuid.uuid4(), uuid.uuid4()
    return [
        *raised,
        ("plan-not-found", AggregateNotFoundError("plan", unknown), UNPROCESSABLE),
        ("project-exists", AggregateExistsError("project", taken), CONFLICT),
    ]


@pytest.mark.parametrize(
    ("code", "error", "status"), _problem_cases(), ids=[case[0] for case in _problem_cases()]
)
def test_problem_status_is_422_for_bad_input_and_409_for_state_conflicts(
    code: str, error: DomainError, status: int
) -> None:
    problem = problem_for(error)
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"].endswith("/" + code)
    assert problem["detail"] == error.reason


async def test_every_state_filter_of_the_http_api_is_a_field_the_processor_stores() -> None:
    from producers.ingress.state import RESOURCES  # noqa: PLC0415  (the reader side)

    driver = FakeDriver()
    plan_id, workflow_id = await approved_plan(driver, 1), uuid.uuid4()
    await send(driver, StartWorkflow(workflow_id=workflow_id, plan_id=plan_id))
    stored: dict[str, set[str]] = {}
    for (aggregate_type, _), (_, state) in driver.uow.states.items():
        stored.setdefault(aggregate_type, set()).update(state)
    for resource in RESOURCES:
        if resource.aggregate_type in stored:
            assert set(resource.filters) <= stored[resource.aggregate_type], resource
    assert {"plan", "workflow", "task"} <= set(stored)


@pytest.mark.parametrize(
    "entry", [e for e in catalog.entries() if e.system_only], ids=lambda e: e.type
)
async def test_a_system_only_command_from_a_caller_is_refused_with_403(
    entry: CatalogEntry,
) -> None:
    driver = TickingFakeDriver()  # deadlines pass
    command, _ = await CATALOG_SCENARIOS[cast("type[Command]", entry.model)](driver)
    admin = Actor.of(OWNER, admin=True)  # not even an admin: hisho's components alone
    envelope = await send(driver, command, actor=admin)
    status = driver.uow.statuses[envelope.id]
    assert status.status is CommandState.REJECTED
    assert status.problem is not None
    assert (status.problem["status"], status.problem["code"]) == (403, "command-system-only")
    assert [e for e in driver.uow.envelopes if e.causation_id == envelope.id] == []
    accepted = await send(driver, command, actor=SYSTEM)  # through the outbox, as hisho
    assert driver.uow.statuses[accepted.id].status is CommandState.PROCESSED


async def test_a_second_workflow_for_one_plan_is_rejected() -> None:
    driver = FakeDriver()
    plan_id = await approved_plan(driver, 1)
    await send(driver, StartWorkflow(workflow_id=uuid.uuid4(), plan_id=plan_id))
    again = await send(driver, StartWorkflow(workflow_id=uuid.uuid4(), plan_id=plan_id))
    problem = driver.uow.statuses[again.id].problem
    assert problem is not None
    assert (problem["status"], problem["code"]) == (409, "plan-workflow-started")
    assert [e.type for e in driver.uow.envelopes].count("WorkflowStarted") == 1


async def test_a_member_who_is_not_the_owner_cannot_change_the_policy() -> None:
    driver = FakeDriver()
    project_id, member = uuid.uuid4(), Actor.of("key:member")
    await send(driver, CreateProject(project_id=project_id, name="P", policy=policy(OWNER)))
    await send(driver, AddProjectMember(project_id=project_id, member=member.principal))
    change = ChangePolicy(project_id=project_id, policy=policy(member.principal))
    refused = await send(driver, change, actor=member)
    problem = driver.uow.statuses[refused.id].problem
    assert problem is not None
    assert (problem["status"], problem["code"]) == (403, "project-not-owner")
    changed = await send(driver, change)  # the owner may
    assert driver.uow.statuses[changed.id].status is CommandState.PROCESSED


async def test_a_notification_to_someone_not_in_the_directory_is_dropped_with_the_reason() -> None:
    driver = FakeDriver()
    driver.people.add("key:alice")
    driver.people.erase("key:alice")  # erased: the directory's row is gone

    def notify() -> SendNotification:
        return SendNotification(
            notification_id=uuid.uuid4(),
            channel=NotificationChannel.EMAIL,
            recipient="key:alice",
            subject="Hi",
            body="Hello",
        )

    envelope = await send(driver, notify(), actor=SYSTEM)
    assert driver.uow.statuses[envelope.id].status is CommandState.PROCESSED
    (dropped,) = [e.data for e in driver.uow.envelopes if e.causation_id == envelope.id]
    assert isinstance(dropped, NotificationDropped)
    assert (dropped.recipient, dropped.reason) == (
        "key:alice",
        "key:alice is not in the people directory",
    )
    driver.people.add("key:alice")  # registered again: delivered to as anyone else
    again = await send(driver, notify(), actor=SYSTEM)
    types = [e.type for e in driver.uow.envelopes if e.causation_id == again.id]
    assert types == ["NotificationRequested"]
