"""Dependencies, the failure policy, the revision limit from the plan's settings, and the
attempt a time limit names: the workflow and task rules the workflow consumer relies on."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from domain.plan import Plan
from domain.task import Task, TaskError, TaskStatus
from domain.workflow import Workflow, WorkflowError, ready_tasks, waiting_for, workflow_id_for
from events import Actor
from events.plan import HumanStep, PlanSettings
from events.project import ApprovalPolicy
from events.task import TaskTimeLimitApproaching
from events.workflow import WorkflowFailed, WorkflowPhase
from tests.fakes import FakeClock

ANA = Actor.of("key:ana")
HISHO = Actor.system("workflow")
A, B, C = UUID(int=1), UUID(int=2), UUID(int=3)


def step(step_id: UUID, *depends_on: UUID) -> HumanStep:
    return HumanStep(
        step_id=step_id,
        title=f"step {step_id.int}",
        assignee=ANA.principal,
        instructions="do",
        depends_on=depends_on,
        soft_limit=timedelta(minutes=5),
        hard_limit=timedelta(minutes=7),
    )


def started(
    settings: PlanSettings | None = None, *, max_attempts: int = 3
) -> tuple[Workflow, dict[UUID, Task], FakeClock]:
    """A workflow of steps A, B (independent) and C (depends on both), in execution."""
    clock = FakeClock()
    plan = Plan.draft(
        plan_id=uuid4(),
        project_id=uuid4(),
        title="Go",
        steps=(step(A), step(B), step(C, A, B)),
        settings=settings,
        at=clock.now(),
    )
    plan.submit(
        policy=ApprovalPolicy(approvers=(ANA.principal,), required_approvals=1),
        by=ANA,
        at=clock.now(),
    )
    plan.approve(by=ANA, on_behalf_of=None, comment=None, at=clock.now())
    workflow, tasks = Workflow.start(
        workflow_id=workflow_id_for(plan.id), plan=plan, at=clock.now(), max_attempts=max_attempts
    )
    workflow.begin_execution(at=clock.now())
    by_step = {task.step.step_id: task for task in tasks}
    return workflow, by_step, clock


def run(task: Task, clock: FakeClock, *, ok: bool = True) -> None:
    if task.status is TaskStatus.PENDING:
        task.queue(at=clock.now())
    task.start(worker=None, by=ANA, at=clock.now())
    if ok:
        task.complete(output="done", by=ANA, at=clock.now())
    else:
        task.fail(error="broke", by=ANA, at=clock.now())


def test_independent_tasks_are_ready_together_and_a_dependent_one_only_after_both() -> None:
    _, tasks, clock = started()
    assert ready_tasks(tasks.values()) == [tasks[A], tasks[B]]
    run(tasks[A], clock)
    assert ready_tasks(tasks.values()) == [tasks[B]]  # C still waits for B
    statuses = {task.id: task.status for task in tasks.values()}
    assert waiting_for(tasks[C], statuses) == [tasks[B].id]
    run(tasks[B], clock)
    assert ready_tasks(tasks.values()) == [tasks[C]]


def test_a_task_is_not_queued_while_a_dependency_is_unfinished() -> None:
    _, tasks, clock = started()
    with pytest.raises(TaskError) as refused:
        tasks[C].queue(waiting_for=[tasks[A].id], at=clock.now())
    assert (refused.value.code, refused.value.status) == ("task-dependencies-unfinished", 409)
    assert tasks[C].status is TaskStatus.PENDING


def test_the_workflow_id_is_derived_from_the_plan() -> None:
    plan_id = uuid4()
    assert workflow_id_for(plan_id) == workflow_id_for(plan_id) != workflow_id_for(uuid4())


def test_fail_policy_a_task_failed_for_good_fails_the_workflow_with_the_task_and_reason() -> None:
    workflow, tasks, clock = started(max_attempts=1)
    assert workflow.on_task_failure == "fail"
    run(tasks[A], clock, ok=False)
    workflow.pull_events()
    workflow.fail(task=tasks[A], reason="A broke", at=clock.now())
    assert workflow.phase is WorkflowPhase.FAILED
    (event,) = [e.event for e in workflow.pull_events()]
    assert event == WorkflowFailed(
        workflow_id=workflow.id,
        project_id=workflow.project_id,
        task_id=tasks[A].id,
        reason="A broke",
    )
    with pytest.raises(WorkflowError, match="workflow-finished"):
        workflow.cancel(reason=None, at=clock.now())  # failed is final


def test_a_workflow_is_not_failed_for_a_task_with_attempts_left_or_not_its_own() -> None:
    workflow, tasks, clock = started(max_attempts=2)
    run(tasks[A], clock, ok=False)  # one attempt of two: it will be retried
    with pytest.raises(WorkflowError) as refused:
        workflow.fail(task=tasks[A], reason="A broke", at=clock.now())
    assert refused.value.code == "workflow-task-not-failed"
    _, others, _ = started()
    with pytest.raises(WorkflowError, match="workflow-unknown-task"):
        workflow.fail(task=others[A], reason="not mine", at=clock.now())
    assert workflow.phase is WorkflowPhase.EXECUTION


def test_wait_policy_is_the_plans_setting_and_survives_storage() -> None:
    workflow, _, _ = started(PlanSettings(on_task_failure="wait"))
    assert workflow.on_task_failure == "wait"
    stored = Workflow.from_state(workflow.to_state(), version=1)
    assert stored.on_task_failure == "wait"
    legacy = {k: v for k, v in workflow.to_state().items() if k != "on_task_failure"}
    assert Workflow.from_state(legacy, version=1).on_task_failure == "fail"  # stored before it


def test_the_revision_limit_is_the_plans_setting() -> None:
    workflow, tasks, clock = started(PlanSettings(max_revisions=1))
    assert workflow.max_revisions == 1
    done = dict.fromkeys(workflow.task_ids, TaskStatus.COMPLETED)
    workflow.begin_review(task_statuses=done, at=clock.now())
    workflow.request_revision(task_ids=[tasks[A].id], reason="again", at=clock.now())
    workflow.begin_review(task_statuses=done, at=clock.now())
    with pytest.raises(WorkflowError) as refused:
        workflow.request_revision(task_ids=[tasks[A].id], reason="again", at=clock.now())
    assert refused.value.code == "workflow-revision-limit"


def test_a_time_limit_names_its_attempt_and_never_touches_a_later_one() -> None:
    _, tasks, clock = started()
    task = tasks[A]
    run(task, clock, ok=False)
    task.retry(at=clock.now())
    task.start(worker=None, by=ANA, at=clock.now())  # attempt 2 runs
    task.pull_events()
    with pytest.raises(TaskError, match="task-attempt-over"):
        task.fail(error="hard time limit of 7 min passed", by=HISHO, at=clock.now(), attempt=1)
    with pytest.raises(TaskError, match="task-attempt-over"):
        task.warn_time_limit(attempt=1, at=clock.now())
    task.warn_time_limit(attempt=2, at=clock.now())
    (warning,) = [e.event for e in task.pull_events()]
    assert isinstance(warning, TaskTimeLimitApproaching)
    assert (warning.attempt, warning.soft_limit, warning.hard_limit) == (
        2,
        timedelta(minutes=5),
        timedelta(minutes=7),
    )
    task.fail(error="hard time limit of 7 min passed", by=HISHO, at=clock.now(), attempt=2)
    assert (task.status, task.error) == (TaskStatus.FAILED, "hard time limit of 7 min passed")
