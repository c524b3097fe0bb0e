"""Who may act: a project's owner and members, and the worker of a task.

The creator owns a project; only the owner, an admin or hisho changes its policy or members,
and the owner stays. A human task is worked by its assignee or an admin; an AI task by hisho
alone. Every refusal here is a 403 that leaves the aggregate as it was.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest

from domain.errors import CONFLICT, FORBIDDEN, UNPROCESSABLE, DomainError
from domain.project import Project
from domain.task import Task, TaskStatus
from events import Actor
from events.plan import AiStep, HumanStep, PlanStep
from events.project import (
    ApprovalPolicy,
    ApprovalPolicyChanged,
    ProjectCreated,
    ProjectMemberAdded,
    ProjectMemberRemoved,
)
from events.task import TaskCompleted, TaskStarted
from tests.fakes import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable

    from domain.aggregate import Aggregate

OWNER = Actor.of("key:olga")
MEMBER = Actor.of("user:https://id.test/mo")
STRANGER = Actor.of("key:stan")
ADMIN = Actor.of("key:root", admin=True)
HISHO = Actor.system("ai_execution")
POLICY = ApprovalPolicy(approvers=("key:olga",), required_approvals=1)
OTHER_POLICY = ApprovalPolicy(approvers=("key:olga", "key:stan"), required_approvals=2)


def project_with_member(clock: FakeClock) -> Project:
    project = Project.create(
        project_id=uuid4(), name="Apollo", policy=POLICY, by=OWNER, at=clock.now()
    )
    project.add_member(MEMBER.principal, by=OWNER, at=clock.now())
    project.pull_events()
    return project


def refusal(aggregate: Aggregate, action: Callable[[], object]) -> tuple[str, int]:
    """The code and status `action` is refused with; checks it changed nothing."""
    before, version = aggregate.to_state(), aggregate.version
    with pytest.raises(DomainError) as caught:
        action()
    assert (aggregate.to_state(), aggregate.version, aggregate.pending_events) == (
        before,
        version,
        (),
    )
    return caught.value.code, caught.value.status


def test_the_creator_owns_the_project() -> None:
    clock = FakeClock()
    project = Project.create(
        project_id=uuid4(), name="Apollo", policy=POLICY, by=OWNER, at=clock.now()
    )
    [recorded] = project.pull_events()
    assert recorded.event == ProjectCreated(
        project_id=project.id, name="Apollo", owner="key:olga", policy=POLICY
    )
    assert (project.owner, project.members) == ("key:olga", ())
    assert project.is_member("key:olga")
    assert not project.is_member("key:stan")


def test_the_owner_adds_and_removes_members() -> None:
    clock = FakeClock()
    project = project_with_member(clock)
    assert project.is_member(MEMBER.principal)
    project.add_member("persona:aiko", by=OWNER, at=clock.now())
    project.remove_member(MEMBER.principal, by=OWNER, at=clock.now())
    assert [recorded.event for recorded in project.pull_events()] == [
        ProjectMemberAdded(project_id=project.id, member="persona:aiko"),
        ProjectMemberRemoved(project_id=project.id, member=MEMBER.principal),
    ]
    assert project.members == ("persona:aiko",)
    assert not project.is_member(MEMBER.principal)
    stored = json.loads(json.dumps(project.to_state()))
    rebuilt = Project.from_state(stored, version=project.version)
    assert (rebuilt.owner, rebuilt.members) == ("key:olga", ("persona:aiko",))


@pytest.mark.parametrize("actor", [MEMBER, STRANGER], ids=["a-member", "a-stranger"])
@pytest.mark.parametrize("command", ["change_policy", "add_member", "remove_member"])
def test_only_the_owner_manages_the_project(actor: Actor, command: str) -> None:
    clock = FakeClock()
    project = project_with_member(clock)
    actions: dict[str, Callable[[], None]] = {
        "change_policy": lambda: project.change_policy(OTHER_POLICY, by=actor, at=clock.now()),
        "add_member": lambda: project.add_member("key:new", by=actor, at=clock.now()),
        "remove_member": lambda: project.remove_member(MEMBER.principal, by=actor, at=clock.now()),
    }
    assert refusal(project, actions[command]) == ("project-not-owner", FORBIDDEN)


@pytest.mark.parametrize("actor", [ADMIN, Actor.system("hisho")], ids=["an-admin", "hisho"])
def test_an_admin_or_hisho_manages_any_project(actor: Actor) -> None:
    clock = FakeClock()
    project = project_with_member(clock)
    project.change_policy(OTHER_POLICY, by=actor, at=clock.now())
    project.add_member("key:new", by=actor, at=clock.now())
    project.remove_member(MEMBER.principal, by=actor, at=clock.now())
    assert [type(recorded.event) for recorded in project.pull_events()] == [
        ApprovalPolicyChanged,
        ProjectMemberAdded,
        ProjectMemberRemoved,
    ]
    assert (project.policy, project.members, project.owner) == (
        OTHER_POLICY,
        ("key:new",),
        "key:olga",  # managing the project does not make anyone its owner
    )


@pytest.mark.parametrize("actor", [OWNER, ADMIN], ids=["by-the-owner", "by-an-admin"])
def test_the_owner_cannot_be_removed(actor: Actor) -> None:
    clock = FakeClock()
    project = project_with_member(clock)
    remove = lambda: project.remove_member(OWNER.principal, by=actor, at=clock.now())  # noqa: E731
    assert refusal(project, remove) == ("project-owner-stays", UNPROCESSABLE)
    assert project.owner == OWNER.principal


def test_members_are_added_once_and_removed_only_if_there() -> None:
    clock = FakeClock()
    project = project_with_member(clock)
    for member in (MEMBER.principal, OWNER.principal):  # the owner is a member already
        add = lambda m=member: project.add_member(m, by=OWNER, at=clock.now())  # noqa: E731
        assert refusal(project, add) == ("project-already-member", CONFLICT)
    remove = lambda: project.remove_member("key:stan", by=OWNER, at=clock.now())  # noqa: E731
    assert refusal(project, remove) == ("project-not-a-member", CONFLICT)


def test_the_owner_is_refused_before_the_state_is_checked() -> None:
    clock = FakeClock()
    project = project_with_member(clock)
    unchanged = lambda: project.change_policy(POLICY, by=MEMBER, at=clock.now())  # noqa: E731
    assert refusal(project, unchanged) == ("project-not-owner", FORBIDDEN)
    assert refusal(project, lambda: project.change_policy(POLICY, by=OWNER, at=clock.now())) == (
        "project-policy-unchanged",
        CONFLICT,
    )


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [(OWNER, True), (MEMBER, True), (ADMIN, True), (HISHO, True), (STRANGER, False)],
    ids=["the-owner", "a-member", "an-admin", "hisho", "a-stranger"],
)
def test_project_work_needs_a_member(actor: Actor, allowed: bool) -> None:
    project = project_with_member(FakeClock())
    if allowed:
        project.require_member(actor)
    else:
        assert refusal(project, lambda: project.require_member(actor)) == (
            "project-not-member",
            FORBIDDEN,
        )


def test_a_project_stored_before_owners_is_managed_by_admins_only() -> None:
    clock = FakeClock()
    state = json.loads(json.dumps(project_with_member(clock).to_state()))
    del state["owner"], state["members"]
    project = Project.from_state(state, version=2)
    assert (project.owner, project.members) == (None, ())
    for actor in (OWNER, STRANGER):
        add = lambda a=actor: project.add_member("key:new", by=a, at=clock.now())  # noqa: E731
        assert refusal(project, add) == ("project-not-owner", FORBIDDEN)
    project.add_member("key:new", by=ADMIN, at=clock.now())
    assert project.members == ("key:new",)


HUMAN = HumanStep(step_id=UUID(int=1), title="Sign", assignee="key:ana", instructions="sign")
AI = AiStep(step_id=UUID(int=2), title="Draft", persona_id=UUID(int=9), input="write")
ANA = Actor.of("key:ana")


def queued(step: PlanStep, clock: FakeClock) -> Task:
    task = Task.create(
        task_id=uuid4(), workflow_id=uuid4(), project_id=uuid4(), step=step, at=clock.now()
    )
    task.queue(at=clock.now())
    task.pull_events()
    return task


def work(task: Task, by: Actor, clock: FakeClock, *, succeed: bool = True) -> None:
    """Start the task and complete (or fail) it as `by`."""
    task.start(worker=by.principal, by=by, at=clock.now())
    if succeed:
        task.complete(output="done", by=by, at=clock.now())
    else:
        task.fail(error="stuck", by=by, at=clock.now())


@pytest.mark.parametrize("succeed", [True, False], ids=["completes", "fails"])
@pytest.mark.parametrize("actor", [ANA, ADMIN], ids=["its-assignee", "an-admin"])
def test_a_human_task_is_worked_by_its_assignee_or_an_admin(actor: Actor, succeed: bool) -> None:
    clock = FakeClock()
    task = queued(HUMAN, clock)
    work(task, actor, clock, succeed=succeed)
    started = task.pull_events()[0].event
    assert started == TaskStarted(
        task_id=task.id,
        workflow_id=task.workflow_id,
        project_id=task.project_id,
        attempt=1,
        worker=actor.principal,
    )
    assert task.status is (TaskStatus.COMPLETED if succeed else TaskStatus.FAILED)


@pytest.mark.parametrize(
    "actor",
    [STRANGER, Actor.of("user:https://id.test/ana"), Actor.of("persona:ana")],
    ids=["a-stranger", "a-user-named-alike", "a-persona-named-alike"],
)
@pytest.mark.parametrize("move", ["start", "complete", "fail"])
def test_a_human_task_refuses_anyone_but_its_assignee(actor: Actor, move: str) -> None:
    clock = FakeClock()
    task = queued(HUMAN, clock)
    if move != "start":
        task.start(worker=ANA.principal, by=ANA, at=clock.now())
        task.pull_events()
    actions: dict[str, Callable[[], None]] = {
        "start": lambda: task.start(worker=actor.principal, by=actor, at=clock.now()),
        "complete": lambda: task.complete(output="mine", by=actor, at=clock.now()),
        "fail": lambda: task.fail(error="mine", by=actor, at=clock.now()),
    }
    assert refusal(task, actions[move]) == ("task-not-assignee", FORBIDDEN)


def test_a_task_assigned_before_ids_were_namespaced_is_worked_by_an_admin() -> None:
    clock = FakeClock()
    upcast = HumanStep(step_id=UUID(int=3), title="Sign", assignee="legacy:ana", instructions="-")
    task = queued(upcast, clock)
    start = lambda: task.start(worker=ANA.principal, by=ANA, at=clock.now())  # noqa: E731
    assert refusal(task, start) == ("task-not-assignee", FORBIDDEN)
    work(task, ADMIN, clock)
    assert task.status is TaskStatus.COMPLETED


def test_an_ai_task_is_worked_by_hisho() -> None:
    clock = FakeClock()
    task = queued(AI, clock)
    work(task, HISHO, clock)
    started, completed = (recorded.event for recorded in task.pull_events())
    assert isinstance(started, TaskStarted)
    assert started.worker == "system:ai_execution"
    assert isinstance(completed, TaskCompleted)
    assert task.status is TaskStatus.COMPLETED


@pytest.mark.parametrize(
    "actor", [ANA, ADMIN, Actor.of("persona:aiko")], ids=["a-person", "an-admin", "a-persona"]
)
@pytest.mark.parametrize("move", ["start", "complete", "fail"])
def test_an_ai_task_refuses_everyone_but_hisho(actor: Actor, move: str) -> None:
    clock = FakeClock()
    task = queued(AI, clock)
    if move != "start":
        task.start(worker=HISHO.principal, by=HISHO, at=clock.now())
        task.pull_events()
    actions: dict[str, Callable[[], None]] = {
        "start": lambda: task.start(worker=actor.principal, by=actor, at=clock.now()),
        "complete": lambda: task.complete(output="mine", by=actor, at=clock.now()),
        "fail": lambda: task.fail(error="mine", by=actor, at=clock.now()),
    }
    assert refusal(task, actions[move]) == ("task-system-only", FORBIDDEN)


def test_who_may_work_is_checked_before_the_status() -> None:
    clock = FakeClock()
    task = queued(HUMAN, clock)  # queued: completing it is refused either way
    complete = lambda: task.complete(output="x", by=STRANGER, at=clock.now())  # noqa: E731
    assert refusal(task, complete) == ("task-not-assignee", FORBIDDEN)
    assert refusal(task, lambda: task.complete(output="x", by=ANA, at=clock.now())) == (
        "task-not-running",
        CONFLICT,
    )
