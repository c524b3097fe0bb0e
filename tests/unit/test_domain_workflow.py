"""Workflow rules: start from an approved plan (once), phases, the revision loop, completion."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest

from domain.plan import Plan
from domain.plan_state import PlanError
from domain.task import TaskStatus
from domain.workflow import Workflow, WorkflowError, task_id_for
from events import Actor
from events.plan import AiStep, HumanStep, PlanSettings, PlanWorkflowStarted
from events.project import ApprovalPolicy
from events.task import TaskCreated
from events.workflow import (
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowPhase,
    WorkflowPhaseChanged,
    WorkflowRevisionRequested,
    WorkflowStarted,
)
from tests.fakes import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable

STEPS = (
    AiStep(step_id=UUID(int=1), title="Draft", persona_id=UUID(int=9), input="write"),
    HumanStep(step_id=UUID(int=2), title="Sign", assignee="key:ana", instructions="sign"),
)
ANA = Actor.of("key:ana")
AUTO = ApprovalPolicy(approvers=(ANA.principal,), required_approvals=1, auto_approve_max_steps=5)
MANUAL = ApprovalPolicy(approvers=(ANA.principal,), required_approvals=1)


def plan(
    clock: FakeClock, policy: ApprovalPolicy = AUTO, settings: PlanSettings | None = None
) -> Plan:
    p = Plan.draft(
        plan_id=uuid4(),
        project_id=uuid4(),
        title="Go",
        steps=STEPS,
        settings=settings,
        at=clock.now(),
    )
    p.submit(policy=policy, by=ANA, at=clock.now())
    if policy is AUTO:  # the approval consumer's decision, by the project's rule
        p.auto_approve("small plans pass", at=clock.now())
    return p


def started(clock: FakeClock, *, max_revisions: int = 3) -> Workflow:
    settings = PlanSettings(max_revisions=max_revisions)
    workflow, _ = Workflow.start(
        workflow_id=uuid4(), plan=plan(clock, settings=settings), at=clock.now()
    )
    workflow.pull_events()
    return workflow


def in_review(clock: FakeClock, *, max_revisions: int = 3) -> Workflow:
    workflow = started(clock, max_revisions=max_revisions)
    workflow.begin_execution(at=clock.now())
    done = dict.fromkeys(workflow.task_ids, TaskStatus.COMPLETED)
    workflow.begin_review(task_statuses=done, at=clock.now())
    workflow.pull_events()
    return workflow


def codes_of(action: Callable[[], object]) -> str:
    with pytest.raises(WorkflowError) as caught:
        action()
    return caught.value.code


def test_start_creates_one_task_per_step_with_derived_ids() -> None:
    clock = FakeClock()
    source = plan(clock)
    retried = Plan.from_state(source.to_state(), version=source.version)  # as the store has it
    workflow_id = uuid4()
    workflow, tasks = Workflow.start(workflow_id=workflow_id, plan=source, at=clock.now())
    [started_event] = [recorded.event for recorded in workflow.pull_events()]
    expected_ids = tuple(task_id_for(workflow_id, step.step_id) for step in STEPS)
    assert started_event == WorkflowStarted(
        workflow_id=workflow_id,
        plan_id=source.id,
        project_id=source.project_id,
        task_ids=expected_ids,
    )
    assert tuple(task.id for task in tasks) == expected_ids
    for task, step in zip(tasks, STEPS, strict=True):
        [created] = [recorded.event for recorded in task.pull_events()]
        assert isinstance(created, TaskCreated)
        assert (created.step, created.workflow_id, task.version) == (step, workflow_id, 1)
    assert workflow.phase is WorkflowPhase.PLANNING
    again, _ = Workflow.start(workflow_id=workflow_id, plan=retried, at=clock.now())
    assert again.task_ids == expected_ids  # a retried command derives the same ids


def test_starting_a_workflow_records_it_on_its_plan() -> None:
    clock = FakeClock()
    source = plan(clock)
    source.pull_events()
    workflow_id = uuid4()
    Workflow.start(workflow_id=workflow_id, plan=source, at=clock.now())
    [recorded] = source.pull_events()
    assert recorded.event == PlanWorkflowStarted(
        plan_id=source.id, project_id=source.project_id, title="Go", workflow_id=workflow_id
    )
    assert (recorded.aggregate_version, source.workflow_id) == (source.version, workflow_id)
    stored = json.loads(json.dumps(source.to_state()))
    assert Plan.from_state(stored, version=source.version).workflow_id == workflow_id


@pytest.mark.parametrize("same_id", [False, True], ids=["another-id", "the-same-id"])
def test_a_plan_starts_one_workflow_only(same_id: bool) -> None:
    clock = FakeClock()
    source = plan(clock)
    first = uuid4()
    Workflow.start(workflow_id=first, plan=source, at=clock.now())
    source.pull_events()
    before = source.to_state()
    with pytest.raises(PlanError) as caught:
        Workflow.start(workflow_id=first if same_id else uuid4(), plan=source, at=clock.now())
    assert (caught.value.code, caught.value.status) == ("plan-workflow-started", 409)
    assert (source.to_state(), source.pending_events, source.workflow_id) == (before, (), first)


def test_only_an_approved_plan_records_a_workflow() -> None:
    clock = FakeClock()
    pending = plan(clock, MANUAL)
    with pytest.raises(PlanError) as caught:
        pending.start_workflow(uuid4(), at=clock.now())
    assert caught.value.code == "plan-not-approved"
    assert pending.workflow_id is None


def test_workflow_needs_an_approved_plan() -> None:
    clock = FakeClock()
    pending = plan(clock, MANUAL)
    assert (
        codes_of(lambda: Workflow.start(workflow_id=uuid4(), plan=pending, at=clock.now()))
        == "workflow-plan-not-approved"
    )


def test_phases_move_forward_in_order() -> None:
    clock = FakeClock()
    workflow = started(clock)
    assert codes_of(lambda: workflow.complete(at=clock.now())) == "workflow-not-in-review"
    workflow.begin_execution(at=clock.now())
    workflow.begin_review(
        task_statuses={
            workflow.task_ids[0]: TaskStatus.COMPLETED,
            workflow.task_ids[1]: TaskStatus.CANCELLED,
        },
        at=clock.now(),
    )
    workflow.complete(at=clock.now())
    events = [recorded.event for recorded in workflow.pull_events()]
    assert events == [
        WorkflowPhaseChanged(
            workflow_id=workflow.id,
            project_id=workflow.project_id,
            from_phase=WorkflowPhase.PLANNING,
            to_phase=WorkflowPhase.EXECUTION,
        ),
        WorkflowPhaseChanged(
            workflow_id=workflow.id,
            project_id=workflow.project_id,
            from_phase=WorkflowPhase.EXECUTION,
            to_phase=WorkflowPhase.REVIEW,
        ),
        WorkflowCompleted(workflow_id=workflow.id, project_id=workflow.project_id, revisions=0),
    ]


def test_review_waits_for_every_task() -> None:
    clock = FakeClock()
    workflow = started(clock)
    workflow.begin_execution(at=clock.now())
    first, second = workflow.task_ids
    busy = {first: TaskStatus.COMPLETED, second: TaskStatus.RUNNING}
    assert (
        codes_of(lambda: workflow.begin_review(task_statuses=busy, at=clock.now()))
        == "workflow-tasks-unfinished"
    )
    partial = {first: TaskStatus.COMPLETED}
    assert (
        codes_of(lambda: workflow.begin_review(task_statuses=partial, at=clock.now()))
        == "workflow-tasks-unknown"
    )
    assert workflow.phase is WorkflowPhase.EXECUTION


def test_review_sends_chosen_tasks_back_and_counts_revisions() -> None:
    clock = FakeClock()
    workflow = in_review(clock)
    chosen = (workflow.task_ids[1],)
    workflow.request_revision(task_ids=chosen, reason="needs a signature", at=clock.now())
    [event] = [recorded.event for recorded in workflow.pull_events()]
    assert event == WorkflowRevisionRequested(
        workflow_id=workflow.id,
        project_id=workflow.project_id,
        task_ids=chosen,
        reason="needs a signature",
        revision=1,
    )
    assert (workflow.phase, workflow.revisions) == (WorkflowPhase.EXECUTION, 1)


def test_revision_loop_stops_at_the_limit() -> None:
    clock = FakeClock()
    workflow = in_review(clock, max_revisions=1)
    chosen = workflow.task_ids[:1]
    workflow.request_revision(task_ids=chosen, reason="again", at=clock.now())
    done = dict.fromkeys(workflow.task_ids, TaskStatus.COMPLETED)
    workflow.begin_review(task_statuses=done, at=clock.now())
    assert (
        codes_of(lambda: workflow.request_revision(task_ids=chosen, reason="x", at=clock.now()))
        == "workflow-revision-limit"
    )
    workflow.complete(at=clock.now())
    assert workflow.phase is WorkflowPhase.COMPLETED


@pytest.mark.parametrize("bad", [(), (UUID(int=404),), "twice"])
def test_revision_names_distinct_tasks_of_the_workflow(bad: object) -> None:
    clock = FakeClock()
    workflow = in_review(clock)
    task_ids = (workflow.task_ids[0],) * 2 if bad == "twice" else bad
    assert isinstance(task_ids, tuple)
    assert (
        codes_of(lambda: workflow.request_revision(task_ids=task_ids, reason="x", at=clock.now()))
        == "workflow-unknown-task"
    )


def test_cancel_from_any_unfinished_phase_but_not_after() -> None:
    clock = FakeClock()
    workflow = in_review(clock)
    workflow.cancel(reason="budget", at=clock.now())
    [event] = [recorded.event for recorded in workflow.pull_events()]
    assert event == WorkflowCancelled(
        workflow_id=workflow.id,
        project_id=workflow.project_id,
        from_phase=WorkflowPhase.REVIEW,
        reason="budget",
    )
    assert codes_of(lambda: workflow.cancel(reason=None, at=clock.now())) == "workflow-finished"


def test_state_survives_json_and_rebuild() -> None:
    clock = FakeClock()
    workflow = in_review(clock)
    workflow.request_revision(task_ids=workflow.task_ids, reason="redo", at=clock.now())
    stored = json.loads(json.dumps(workflow.to_state()))
    rebuilt = Workflow.from_state(stored, version=workflow.version)
    assert rebuilt.to_state() == workflow.to_state()
    assert (rebuilt.phase, rebuilt.revisions, rebuilt.version) == (WorkflowPhase.EXECUTION, 1, 4)
