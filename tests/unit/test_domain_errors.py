"""A domain error carries its problem status: 422 for input the command cannot mean, else 409.

Each code is raised by the domain itself (the raise site sets the status), so a new raise
site of an old code that forgets its status fails here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

import pytest

from domain.errors import CONFLICT, UNPROCESSABLE, DomainError
from domain.task import TaskStatus
from infra.db.repositories import AggregateExistsError, AggregateNotFoundError
from tests.fakes import FakeClock
from tests.unit.test_domain_plan import TRIO, ai, drafted, human, submitted
from tests.unit.test_domain_workflow import in_review, started

if TYPE_CHECKING:
    from collections.abc import Callable


def _raised(action: Callable[[FakeClock], object]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        action(FakeClock())
    return caught.value


def _approve_twice(clock: FakeClock) -> None:
    plan = submitted(clock)
    plan.approve(approver="ana", comment=None, at=clock.now())
    plan.approve(approver="ana", comment=None, at=clock.now())


def _review_with_unknown_tasks(clock: FakeClock) -> None:
    workflow = started(clock)
    workflow.begin_execution(at=clock.now())
    statuses = {uuid4(): TaskStatus.COMPLETED}
    workflow.begin_review(task_statuses=statuses, at=clock.now())


CASES: list[tuple[str, Callable[[FakeClock], object], int]] = [
    ("plan-nothing-to-edit", lambda c: drafted(c).edit(at=c.now()), UNPROCESSABLE),
    (
        "plan-has-no-steps",
        lambda c: drafted(c, steps=0).submit(policy=TRIO, at=c.now()),
        UNPROCESSABLE,
    ),
    (
        "plan-duplicate-step",
        lambda c: drafted(c).edit(steps=(human(1), ai(1)), at=c.now()),
        UNPROCESSABLE,
    ),
    (
        "plan-not-an-approver",
        lambda c: submitted(c).approve(approver="mallory", comment=None, at=c.now()),
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
]


@pytest.mark.parametrize(("code", "action", "status"), CASES, ids=[case[0] for case in CASES])
def test_each_code_has_the_status_it_always_had(
    code: str, action: Callable[[FakeClock], object], status: int
) -> None:
    error = _raised(action)
    assert (error.code, error.status) == (code, status)


def test_a_domain_error_is_a_conflict_unless_it_says_otherwise() -> None:
    assert DomainError("x-y", "because").status == CONFLICT == 409
    assert DomainError("x-y", "because", status=UNPROCESSABLE).status == 422
    assert AggregateExistsError("plan", uuid4()).status == CONFLICT


def test_an_unknown_aggregate_is_unprocessable() -> None:
    error = AggregateNotFoundError("plan", uuid4())
    assert (error.code, error.status) == ("plan-not-found", UNPROCESSABLE)
