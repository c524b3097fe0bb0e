"""Random command sequences on a task keep its attempt invariants (stateful test).

Its worker (the assignee of a human task, hisho for an AI task) starts, completes and fails
it; an admin may work a human task; anyone else is refused whatever the task's status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.task import Task, TaskStatus
from events import Actor
from events.task import TaskFailed
from tests.fakes import FakeClock
from tests.unit.test_domain_support import (
    MACHINE_SETTINGS,
    attempt,
    step,
    survives_storage,
    worker_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from domain.aggregate import RecordedEvent


T = TaskStatus
TASK_EDGES = {(T.PENDING, T.QUEUED), (T.QUEUED, T.RUNNING), (T.RUNNING, T.COMPLETED)}
TASK_EDGES |= {(T.RUNNING, T.FAILED), (T.FAILED, T.QUEUED), (T.COMPLETED, T.PENDING)}
TASK_EDGES |= {(s, T.CANCELLED) for s in (T.PENDING, T.QUEUED, T.RUNNING, T.FAILED)}
ADMIN = Actor.of("key:root", admin=True)
SENDERS = st.sampled_from(("worker", "admin", "stranger"))


class TaskMachine(RuleBasedStateMachine):
    """Queues, runs, fails, retries, cancels and reopens one task at random."""

    clock: FakeClock
    task: Task
    events: list[RecordedEvent]
    starts: int

    @initialize(max_attempts=st.integers(1, 3), n=st.integers(1, 2))
    def create(self, max_attempts: int, n: int) -> None:
        self.clock = FakeClock()
        self.task = Task.create(
            task_id=uuid4(),
            workflow_id=uuid4(),
            project_id=uuid4(),
            step=step(n),
            max_attempts=max_attempts,
            at=self.clock.now(),
        )
        self.events = self.task.pull_events()
        self.starts = 0

    def _do(self, action: Callable[[], object], expected: str | None) -> bool:
        new = attempt(self.task, lambda: self.task.status, action, expected, TASK_EDGES)
        self.events += new
        return bool(new)

    def _unless(self, status: TaskStatus, code: str) -> str | None:
        return None if self.task.status is status else code

    @rule()
    def queue(self) -> None:
        expected = self._unless(T.PENDING, "task-not-pending")
        self._do(lambda: self.task.queue(at=self.clock.now()), expected)

    def _sender(self, sender: str) -> tuple[Actor, str | None]:
        """The actor called `sender`, and the refusal its work gets whatever the status."""
        ai = self.task.step.kind == "ai"
        if sender == "worker":
            return worker_for(self.task.step), None
        if sender == "admin":
            return ADMIN, "task-system-only" if ai else None
        return Actor.of("key:mallory"), "task-system-only" if ai else "task-not-assignee"

    @rule(sender=SENDERS)
    def start(self, sender: str = "worker") -> None:
        by, refusal = self._sender(sender)
        expected = refusal or self._unless(T.QUEUED, "task-not-queued")
        at = self.clock.now()
        if self._do(lambda: self.task.start(worker=by.principal, by=by, at=at), expected):
            self.starts += 1
            assert self.task.worker == by.principal

    @rule(sender=SENDERS)
    def complete(self, sender: str = "worker") -> None:
        by, refusal = self._sender(sender)
        expected = refusal or self._unless(T.RUNNING, "task-not-running")
        self._do(lambda: self.task.complete(output="out", by=by, at=self.clock.now()), expected)

    @rule(sender=SENDERS)
    def fail(self, sender: str = "worker") -> None:
        by, refusal = self._sender(sender)
        expected = refusal or self._unless(T.RUNNING, "task-not-running")
        self._do(lambda: self.task.fail(error="boom", by=by, at=self.clock.now()), expected)

    @rule()
    def retry(self) -> None:
        expected = self._unless(T.FAILED, "task-not-failed")
        if expected is None and self.starts >= self.task.max_attempts:
            expected = "task-attempts-exhausted"
        self._do(lambda: self.task.retry(at=self.clock.now()), expected)

    @rule()
    def cancel(self) -> None:
        finished = self.task.status in {T.COMPLETED, T.CANCELLED}
        expected = "task-finished" if finished else None
        self._do(lambda: self.task.cancel(reason=None, at=self.clock.now()), expected)

    @rule()
    def reopen(self) -> None:
        expected = self._unless(T.COMPLETED, "task-not-completed")
        if self._do(lambda: self.task.reopen(feedback="again", at=self.clock.now()), expected):
            self.starts = 0

    @rule(succeed=st.booleans())
    def progress(self, succeed: bool) -> None:
        """The usual next step, so that random runs reach retries, exhaustion and reopening."""
        moves = {
            T.PENDING: self.queue,
            T.QUEUED: self.start,
            T.RUNNING: self.complete if succeed else self.fail,
            T.FAILED: self.retry,
            T.COMPLETED: self.reopen,
            T.CANCELLED: self.cancel,
        }
        moves[self.task.status]()

    @invariant()
    def attempts_never_exceed_the_maximum(self) -> None:
        assert self.task.attempts == self.starts <= self.task.max_attempts

    @invariant()
    def failures_say_whether_a_retry_is_left(self) -> None:
        for recorded in self.events:
            if isinstance(recorded.event, TaskFailed):
                failed = recorded.event
                assert failed.retryable == (failed.attempt < self.task.max_attempts)

    @invariant()
    def version_counts_every_event(self) -> None:
        assert self.task.version == len(self.events)
        survives_storage(self.task)


TestTaskMachine = TaskMachine.TestCase
TestTaskMachine.settings = MACHINE_SETTINGS
