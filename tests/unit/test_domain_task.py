"""Task rules: the status edges, attempts and retries, cancellation and reopening.

An AI task is worked by hisho (a `system:` actor); who may work a human task is covered in
test_domain_access.
"""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import pytest

from domain.task import Task, TaskError, TaskStatus
from events import Actor
from events.plan import AiStep, HumanStep
from events.task import (
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskQueued,
    TaskReopened,
    TaskRetried,
    TaskStarted,
)
from tests.fakes import FakeClock

HISHO = Actor.system("ai_execution")
ANA = Actor.of("key:ana")
STEP = AiStep(step_id=UUID(int=1), title="Summarise", persona_id=UUID(int=2), input="the doc")


def new_task(clock: FakeClock, *, max_attempts: int = 2) -> Task:
    task = Task.create(
        task_id=uuid4(),
        workflow_id=uuid4(),
        project_id=uuid4(),
        step=STEP,
        max_attempts=max_attempts,
        at=clock.now(),
    )
    task.pull_events()
    return task


def running(clock: FakeClock, *, max_attempts: int = 2) -> Task:
    task = new_task(clock, max_attempts=max_attempts)
    task.queue(at=clock.now())
    task.start(worker="system:ai_execution", by=HISHO, at=clock.now())
    task.pull_events()
    return task


def events_of(task: Task) -> list[object]:
    return [recorded.event for recorded in task.pull_events()]


def test_create_records_the_step_and_the_attempt_limit() -> None:
    clock = FakeClock()
    task = Task.create(
        task_id=uuid4(), workflow_id=uuid4(), project_id=uuid4(), step=STEP, at=clock.now()
    )
    [created] = events_of(task)
    assert isinstance(created, TaskCreated)
    assert (created.step, created.max_attempts) == (STEP, 3)
    assert (task.status, task.attempts, task.version) == (TaskStatus.PENDING, 0, 1)


def test_happy_path_counts_one_attempt() -> None:
    clock = FakeClock()
    task = new_task(clock)
    task.queue(at=clock.now())
    task.start(worker="system:w1", by=HISHO, at=clock.now())
    task.complete(output="summary", by=HISHO, at=clock.now())
    events = events_of(task)
    assert [type(e) for e in events] == [TaskQueued, TaskStarted, TaskCompleted]
    ids = {"task_id": task.id, "workflow_id": task.workflow_id, "project_id": task.project_id}
    assert events == [
        TaskQueued(**ids, step=STEP, attempt=1, feedback=None),
        TaskStarted(**ids, attempt=1, worker="system:w1"),
        TaskCompleted(**ids, attempt=1, output="summary"),
    ]
    assert (task.status, task.attempts, task.output) == (TaskStatus.COMPLETED, 1, "summary")


def test_human_task_is_completed_by_command_with_its_output() -> None:
    clock = FakeClock()
    step = HumanStep(
        step_id=UUID(int=3), title="Sign", assignee=ANA.principal, instructions="sign it"
    )
    task = Task.create(
        task_id=uuid4(), workflow_id=uuid4(), project_id=uuid4(), step=step, at=clock.now()
    )
    task.queue(at=clock.now())
    task.start(worker=ANA.principal, by=ANA, at=clock.now())
    task.complete(output="signed", by=ANA, at=clock.now())
    assert (task.status, task.output, task.to_state()["kind"]) == (
        TaskStatus.COMPLETED,
        "signed",
        "human",
    )


def test_failed_task_is_retried_until_attempts_run_out() -> None:
    clock = FakeClock()
    task = running(clock, max_attempts=2)
    task.fail(error="timeout", by=HISHO, at=clock.now())
    task.retry(at=clock.now())
    task.start(worker="system:w2", by=HISHO, at=clock.now())
    task.fail(error="timeout again", by=HISHO, at=clock.now())
    events = events_of(task)
    assert [type(e) for e in events] == [
        TaskFailed,
        TaskRetried,
        TaskQueued,
        TaskStarted,
        TaskFailed,
    ]
    first_failure, retried, last_failure = events[0], events[1], events[4]
    assert isinstance(first_failure, TaskFailed)
    assert isinstance(retried, TaskRetried)
    assert isinstance(last_failure, TaskFailed)
    assert (first_failure.retryable, retried.attempt, last_failure.retryable) == (True, 2, False)
    assert retried == TaskRetried(
        task_id=task.id, workflow_id=task.workflow_id, project_id=task.project_id, attempt=2
    )
    with pytest.raises(TaskError) as caught:
        task.retry(at=clock.now())
    assert caught.value.code == "task-attempts-exhausted"
    assert task.attempts == task.max_attempts == 2


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("start", "task-not-queued"),
        ("complete", "task-not-running"),
        ("fail", "task-not-running"),
        ("retry", "task-not-failed"),
        ("reopen", "task-not-completed"),
    ],
)
def test_pending_task_refuses_moves_it_cannot_make(action: str, code: str) -> None:
    clock = FakeClock()
    task = new_task(clock)
    before = task.to_state()
    calls = {
        "start": lambda: task.start(worker=None, by=HISHO, at=clock.now()),
        "complete": lambda: task.complete(output="x", by=HISHO, at=clock.now()),
        "fail": lambda: task.fail(error="x", by=HISHO, at=clock.now()),
        "retry": lambda: task.retry(at=clock.now()),
        "reopen": lambda: task.reopen(feedback="x", at=clock.now()),
    }
    with pytest.raises(TaskError) as caught:
        calls[action]()
    assert caught.value.code == code
    assert (task.to_state(), task.pending_events) == (before, ())


def test_queued_task_cannot_be_queued_twice() -> None:
    clock = FakeClock()
    task = new_task(clock)
    task.queue(at=clock.now())
    with pytest.raises(TaskError) as caught:
        task.queue(at=clock.now())
    assert caught.value.code == "task-not-pending"


def test_unfinished_task_can_be_cancelled_but_not_twice() -> None:
    clock = FakeClock()
    task = running(clock)
    task.cancel(reason="plan changed", at=clock.now())
    assert events_of(task) == [
        TaskCancelled(
            task_id=task.id,
            workflow_id=task.workflow_id,
            project_id=task.project_id,
            reason="plan changed",
        )
    ]
    with pytest.raises(TaskError) as caught:
        task.cancel(reason=None, at=clock.now())
    assert caught.value.code == "task-finished"


def test_completed_task_cannot_be_cancelled() -> None:
    clock = FakeClock()
    task = running(clock)
    task.complete(output="done", by=HISHO, at=clock.now())
    with pytest.raises(TaskError) as caught:
        task.cancel(reason=None, at=clock.now())
    assert caught.value.code == "task-finished"


def test_reopened_task_starts_its_attempts_again_with_feedback() -> None:
    clock = FakeClock()
    task = running(clock, max_attempts=1)
    task.complete(output="draft", by=HISHO, at=clock.now())
    task.reopen(feedback="shorter please", at=clock.now())
    task.queue(at=clock.now())
    events = events_of(task)
    assert events[1] == TaskReopened(
        task_id=task.id,
        workflow_id=task.workflow_id,
        project_id=task.project_id,
        revision=1,
        feedback="shorter please",
    )
    queued = events[2]
    assert isinstance(queued, TaskQueued)
    assert (queued.attempt, queued.feedback) == (1, "shorter please")
    assert (task.attempts, task.revision, task.output) == (0, 1, None)


def test_state_survives_json_and_rebuild() -> None:
    clock = FakeClock()
    task = running(clock)
    task.fail(error="boom", by=HISHO, at=clock.now())
    stored = json.loads(json.dumps(task.to_state()))
    rebuilt = Task.from_state(stored, version=task.version)
    assert rebuilt.to_state() == task.to_state()
    rebuilt.retry(at=clock.now())
    assert (rebuilt.status, rebuilt.version) == (TaskStatus.QUEUED, task.version + 2)
