"""A domain error carries its problem status: 422 for input the command cannot mean, 403 for
an actor who may not do this whatever the state, else 409.

Each code is raised by the domain itself (the raise site sets the status), so a new raise
site of an old code that forgets its status fails here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

import pytest

from domain.errors import CONFLICT, FORBIDDEN, UNPROCESSABLE, DomainError
from domain.project import Project
from domain.task import Task, TaskStatus
from events import Actor
from infra.db.repositories import AggregateExistsError, AggregateNotFoundError
from tests.fakes import FakeClock
from tests.unit.test_domain_plan import ANA, BO, SAM, TRIO, ai, drafted, human, submitted
from tests.unit.test_domain_workflow import MANUAL, in_review, plan, started

if TYPE_CHECKING:
    from collections.abc import Callable


def _raised(action: Callable[[FakeClock], object]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        action(FakeClock())
    return caught.value


def _approve_twice(clock: FakeClock) -> None:
    plan = submitted(clock)
    plan.approve(by=ANA, on_behalf_of=None, comment=None, at=clock.now())
    plan.approve(by=ANA, on_behalf_of=None, comment=None, at=clock.now())


def _project(clock: FakeClock) -> Project:
    return Project.create(project_id=uuid4(), name="P", policy=TRIO, by=SAM, at=clock.now())


def _running_task(clock: FakeClock, *, n: int) -> Task:
    """A running task of step `n`: human if odd (assigned to ANA), else AI."""
    step = human(n) if n % 2 else ai(n)
    task = Task.create(
        task_id=uuid4(), workflow_id=uuid4(), project_id=uuid4(), step=step, at=clock.now()
    )
    task.queue(at=clock.now())
    hisho = Actor.system("ai_execution")
    task.start(worker=None, by=ANA if n % 2 else hisho, at=clock.now())
    return task


def _second_workflow(clock: FakeClock) -> None:
    approved = plan(clock)
    approved.start_workflow(uuid4(), at=clock.now())
    approved.start_workflow(uuid4(), at=clock.now())


def _review_with_unknown_tasks(clock: FakeClock) -> None:
    workflow = started(clock)
    workflow.begin_execution(at=clock.now())
    statuses = {uuid4(): TaskStatus.COMPLETED}
    workflow.begin_review(task_statuses=statuses, at=clock.now())


CASES: list[tuple[str, Callable[[FakeClock], object], int]] = [
    ("plan-nothing-to-edit", lambda c: drafted(c).edit(at=c.now()), UNPROCESSABLE),
    (
        "plan-has-no-steps",
        lambda c: drafted(c, steps=0).submit(policy=TRIO, by=SAM, at=c.now()),
        UNPROCESSABLE,
    ),
    (
        "plan-duplicate-step",
        lambda c: drafted(c).edit(steps=(human(1), ai(1)), at=c.now()),
        UNPROCESSABLE,
    ),
    (
        "project-owner-stays",
        lambda c: _project(c).remove_member(SAM.principal, by=SAM, at=c.now()),
        UNPROCESSABLE,
    ),
    ("workflow-tasks-unknown", _review_with_unknown_tasks, UNPROCESSABLE),
    (
        "workflow-unknown-task",
        lambda c: in_review(c).request_revision(task_ids=(uuid4(),), reason="x", at=c.now()),
        UNPROCESSABLE,
    ),
    ("plan-not-draft", lambda c: submitted(c).edit(title="t", at=c.now()), CONFLICT),
    ("plan-duplicate-vote", _approve_twice, CONFLICT),
    (
        "workflow-not-in-review",
        lambda c: started(c).request_revision(task_ids=(), reason="x", at=c.now()),
        CONFLICT,
    ),
    (
        "project-already-member",
        lambda c: _project(c).add_member(SAM.principal, by=SAM, at=c.now()),
        CONFLICT,
    ),
    (
        "project-not-a-member",
        lambda c: _project(c).remove_member(BO.principal, by=SAM, at=c.now()),
        CONFLICT,
    ),
    ("plan-workflow-started", _second_workflow, CONFLICT),
    ("plan-not-approved", lambda c: plan(c, MANUAL).start_workflow(uuid4(), at=c.now()), CONFLICT),
    (
        "plan-not-an-approver",
        lambda c: submitted(c).approve(
            by=Actor.of("key:mallory"), on_behalf_of=None, comment=None, at=c.now()
        ),
        FORBIDDEN,
    ),
    (
        "plan-vote-on-behalf-forbidden",
        lambda c: submitted(c).reject(by=ANA, on_behalf_of=BO.principal, reason="x", at=c.now()),
        FORBIDDEN,
    ),
    (
        "project-not-owner",
        lambda c: _project(c).add_member(ANA.principal, by=ANA, at=c.now()),
        FORBIDDEN,
    ),
    ("project-not-member", lambda c: _project(c).require_member(ANA), FORBIDDEN),
    (
        "task-not-assignee",
        lambda c: _running_task(c, n=1).complete(output="x", by=BO, at=c.now()),
        FORBIDDEN,
    ),
    (
        "task-system-only",
        lambda c: _running_task(c, n=2).fail(
            error="x", by=Actor.of(ANA.principal, admin=True), at=c.now()
        ),
        FORBIDDEN,
    ),
]


@pytest.mark.parametrize(("code", "action", "status"), CASES, ids=[case[0] for case in CASES])
def test_each_code_has_its_status(
    code: str, action: Callable[[FakeClock], object], status: int
) -> None:
    error = _raised(action)
    assert (error.code, error.status) == (code, status)


def test_a_domain_error_is_a_conflict_unless_it_says_otherwise() -> None:
    assert DomainError("x-y", "because").status == CONFLICT == 409
    assert DomainError("x-y", "because", status=UNPROCESSABLE).status == 422
    assert DomainError("x-y", "because", status=FORBIDDEN).status == 403
    assert AggregateExistsError("plan", uuid4()).status == CONFLICT


def test_an_unknown_aggregate_is_unprocessable() -> None:
    error = AggregateNotFoundError("plan", uuid4())
    assert (error.code, error.status) == ("plan-not-found", UNPROCESSABLE)
