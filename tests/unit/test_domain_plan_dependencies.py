"""Step dependencies are checked when a plan is drafted or edited: known steps, no cycle."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from domain.errors import UNPROCESSABLE
from domain.plan import Plan
from domain.plan_state import PlanError
from events.plan import HumanStep
from tests.fakes import FakeClock


def step(n: int, *depends_on: int) -> HumanStep:
    return HumanStep(
        step_id=UUID(int=n),
        title=f"step {n}",
        assignee="key:ana",
        instructions="do",
        depends_on=tuple(UUID(int=d) for d in depends_on),
    )


def draft(*steps: HumanStep) -> Plan:
    return Plan.draft(
        plan_id=uuid4(), project_id=uuid4(), title="Launch", steps=steps, at=FakeClock().now()
    )


def test_a_plan_may_have_independent_steps_and_a_step_depending_on_both() -> None:
    plan = draft(step(1), step(2), step(3, 1, 2))
    assert plan.steps[2].depends_on == (UUID(int=1), UUID(int=2))


def test_a_dependency_on_a_step_the_plan_does_not_have_is_refused() -> None:
    with pytest.raises(PlanError) as refused:
        draft(step(1), step(2, 7))
    assert (refused.value.code, refused.value.status) == ("plan-unknown-dependency", UNPROCESSABLE)
    assert str(UUID(int=7)) in str(refused.value)


def test_a_dependency_cycle_is_refused_at_draft() -> None:
    with pytest.raises(PlanError) as refused:
        draft(step(1, 3), step(2, 1), step(3, 2))
    assert (refused.value.code, refused.value.status) == ("plan-dependency-cycle", UNPROCESSABLE)


def test_an_edit_that_makes_a_cycle_or_names_an_unknown_step_is_refused_and_changes_nothing() -> (
    None
):
    plan = draft(step(1), step(2, 1))
    with pytest.raises(PlanError, match="plan-dependency-cycle"):
        plan.edit(steps=(step(1, 2), step(2, 1)), at=FakeClock().now())
    with pytest.raises(PlanError, match="plan-unknown-dependency"):
        plan.edit(steps=(step(1, 5),), at=FakeClock().now())
    assert plan.steps == (step(1), step(2, 1))
