"""Shared checks for the stateful domain tests (this module holds no tests itself).

Each machine's rule asks a small model which error code (or none) a command must give, runs
it through `attempt`, which checks what every command obeys: a refused command changes
nothing; an accepted one records events numbered right after the previous version and moves
the status along an allowed edge.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from uuid import UUID

from hypothesis import settings
from hypothesis import strategies as st

from domain.errors import DomainError
from events import Actor
from events.plan import AiStep, HumanStep, PlanStep

if TYPE_CHECKING:
    from collections.abc import Callable

    from domain.aggregate import Aggregate, RecordedEvent

MACHINE_SETTINGS = settings(max_examples=100, stateful_step_count=40, deadline=None)

ANA = Actor.of("key:ana")  # the assignee of every human step below
HISHO = Actor.system("ai_execution")  # who runs AI tasks


def attempt(
    aggregate: Aggregate,
    status_of: Callable[[], object],
    action: Callable[[], object],
    expected: str | None,
    edges: set[tuple[Any, Any]],
) -> list[RecordedEvent]:
    """Run one command and check the rules every command obeys; return its events."""
    state, version, status = aggregate.to_state(), aggregate.version, status_of()
    refusal: str | None = None
    try:
        action()
    except DomainError as error:
        refusal = error.code
    if refusal is not None or expected is not None:
        assert refusal == expected, f"refused as {refusal}, expected {expected}"
        assert (aggregate.to_state(), aggregate.version) == (state, version)
        assert aggregate.pending_events == ()
        return []
    recorded = aggregate.pull_events()
    assert [r.aggregate_version for r in recorded] == list(
        range(version + 1, aggregate.version + 1)
    )
    assert recorded, "an accepted command records at least one event"
    assert (status, status_of()) in edges
    return recorded


def survives_storage(aggregate: Aggregate) -> None:
    stored = json.loads(json.dumps(aggregate.to_state()))
    rebuilt = type(aggregate).from_state(stored, version=aggregate.version)
    assert rebuilt.to_state() == aggregate.to_state()


def step(n: int) -> PlanStep:
    if n % 2:
        return HumanStep(
            step_id=UUID(int=n), title=f"s{n}", assignee=ANA.principal, instructions="do"
        )
    return AiStep(step_id=UUID(int=n), title=f"s{n}", persona_id=UUID(int=99), input="go")


def worker_for(plan_step: PlanStep) -> Actor:
    """Who may start, complete and fail a task of `plan_step`: its assignee, or hisho for AI."""
    return ANA if isinstance(plan_step, HumanStep) else HISHO


STEP_LISTS = st.lists(st.integers(1, 20), max_size=3, unique=True).map(
    lambda ns: tuple(step(n) for n in ns)
)
