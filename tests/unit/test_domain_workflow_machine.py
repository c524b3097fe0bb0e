"""Random command sequences on a workflow and its tasks keep their invariants (stateful test)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.plan import Plan
from domain.task import Task, TaskError, TaskStatus
from domain.workflow import Workflow, task_id_for
from events import Actor
from events.plan import PlanSettings
from events.project import ApprovalPolicy
from events.workflow import WorkflowPhase, WorkflowRevisionRequested
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
W = WorkflowPhase
WORKFLOW_EDGES = {(W.PLANNING, W.EXECUTION), (W.EXECUTION, W.REVIEW), (W.REVIEW, W.EXECUTION)}
WORKFLOW_EDGES |= {(W.REVIEW, W.COMPLETED)}
WORKFLOW_EDGES |= {(p, W.CANCELLED) for p in (W.PLANNING, W.EXECUTION, W.REVIEW)}
TASK_MOVES = ("queue", "start", "complete", "fail", "retry", "cancel")
DONE = {T.COMPLETED, T.CANCELLED}


class WorkflowMachine(RuleBasedStateMachine):
    """Drives a workflow and its tasks, as the command processor and process managers would."""

    clock: FakeClock
    workflow: Workflow
    tasks: list[Task]
    events: list[RecordedEvent]

    @initialize(size=st.integers(1, 3), max_revisions=st.integers(0, 2))
    def start(self, size: int, max_revisions: int) -> None:
        self.clock = FakeClock()
        now = self.clock.now()
        steps = tuple(step(n) for n in range(1, size + 1))
        ana = Actor.of("key:ana")
        auto = ApprovalPolicy(
            approvers=(ana.principal,), required_approvals=1, auto_approve_max_steps=3
        )
        settings = PlanSettings(max_revisions=max_revisions)
        plan = Plan.draft(
            plan_id=uuid4(), project_id=uuid4(), title="T", steps=steps, settings=settings, at=now
        )
        plan.submit(policy=auto, by=ana, at=now)
        plan.auto_approve("small plans pass", at=now)  # the approval consumer's decision
        workflow_id = uuid4()
        self.workflow, self.tasks = Workflow.start(
            workflow_id=workflow_id, plan=plan, at=now, max_attempts=2
        )
        assert self.workflow.task_ids == tuple(task_id_for(workflow_id, s.step_id) for s in steps)
        self.events = self.workflow.pull_events()

    def _do(self, action: Callable[[], object], expected: str | None) -> bool:
        phase_of = lambda: self.workflow.phase  # noqa: E731
        new = attempt(self.workflow, phase_of, action, expected, WORKFLOW_EDGES)
        self.events += new
        return bool(new)

    def _unless(self, phase: WorkflowPhase, code: str) -> str | None:
        return None if self.workflow.phase is phase else code

    @rule(index=st.integers(0, 2), move=st.sampled_from(TASK_MOVES))
    def move_a_task(self, index: int, move: str) -> None:
        task, at = self.tasks[index % len(self.tasks)], self.clock.now()
        by = worker_for(task.step)
        actions: dict[str, Callable[[], None]] = {
            "queue": lambda: task.queue(at=at),
            "start": lambda: task.start(worker=by.principal, by=by, at=at),
            "complete": lambda: task.complete(output="out", by=by, at=at),
            "fail": lambda: task.fail(error="boom", by=by, at=at),
            "retry": lambda: task.retry(at=at),
            "cancel": lambda: task.cancel(reason=None, at=at),
        }
        try:
            actions[move]()
        except TaskError:
            return  # the task machine checks these refusals in detail

    @rule()
    def finish_every_task(self) -> None:
        at = self.clock.now()  # a diligent executor: every open task runs and completes
        for task in self.tasks:
            by = worker_for(task.step)
            if task.status is T.FAILED and task.attempts < task.max_attempts:
                task.retry(at=at)
            if task.status is T.PENDING:
                task.queue(at=at)
            if task.status is T.QUEUED:
                task.start(worker=by.principal, by=by, at=at)
            if task.status is T.RUNNING:
                task.complete(output="out", by=by, at=at)

    @rule()
    def begin_execution(self) -> None:
        expected = self._unless(W.PLANNING, "workflow-not-in-planning")
        self._do(lambda: self.workflow.begin_execution(at=self.clock.now()), expected)

    @rule()
    def begin_review(self) -> None:
        statuses = {task.id: task.status for task in self.tasks}
        expected = self._unless(W.EXECUTION, "workflow-not-in-execution")
        if expected is None and not set(statuses.values()) <= DONE:
            expected = "workflow-tasks-unfinished"
        self._do(
            lambda: self.workflow.begin_review(task_statuses=statuses, at=self.clock.now()),
            expected,
        )

    @rule(data=st.data())
    def request_revision(self, data: st.DataObject) -> None:
        self._revise(data.draw(st.lists(st.sampled_from(self.tasks), unique=True, max_size=3)))

    def _revise(self, chosen: list[Task]) -> None:
        expected = self._unless(W.REVIEW, "workflow-not-in-review")
        if expected is None and not chosen:
            expected = "workflow-unknown-task"
        elif expected is None and self.workflow.revisions >= self.workflow.max_revisions:
            expected = "workflow-revision-limit"
        ids, at = [task.id for task in chosen], self.clock.now()
        if self._do(
            lambda: self.workflow.request_revision(task_ids=ids, reason="r", at=at), expected
        ):
            for task in chosen:  # what the process manager does on workflow.revision_requested
                if task.status is T.COMPLETED:
                    task.reopen(feedback="r", at=at)

    @rule()
    def progress(self) -> None:
        """The usual next step, so that random runs reach review and the revision loop."""
        if self.workflow.phase is W.PLANNING:
            self.begin_execution()
        elif self.workflow.phase is W.EXECUTION:
            self.finish_every_task()
            self.begin_review()
        elif self.workflow.revisions <= self.workflow.max_revisions:  # one past the limit too
            self._revise(self.tasks[:1])
        else:
            self.complete()

    @rule()
    def complete(self) -> None:
        expected = self._unless(W.REVIEW, "workflow-not-in-review")
        self._do(lambda: self.workflow.complete(at=self.clock.now()), expected)

    @rule()
    def cancel(self) -> None:
        finished = self.workflow.phase in {W.COMPLETED, W.CANCELLED}
        expected = "workflow-finished" if finished else None
        if self._do(lambda: self.workflow.cancel(reason=None, at=self.clock.now()), expected):
            for task in self.tasks:  # what the process manager does on workflow.cancelled
                if task.status not in DONE:
                    task.cancel(reason="workflow cancelled", at=self.clock.now())

    @invariant()
    def revisions_are_counted_and_bounded(self) -> None:
        requested = [e for e in self.events if isinstance(e.event, WorkflowRevisionRequested)]
        assert self.workflow.revisions == len(requested) <= self.workflow.max_revisions

    @invariant()
    def tasks_stay_within_their_attempts(self) -> None:
        for task in self.tasks:
            assert task.attempts <= task.max_attempts
            assert task.workflow_id == self.workflow.id

    @invariant()
    def every_event_names_the_project(self) -> None:
        recorded = [*self.events, *(e for task in self.tasks for e in task.pending_events)]
        assert {getattr(e.event, "project_id", None) for e in recorded} == {
            self.workflow.project_id
        }

    @invariant()
    def version_counts_every_event(self) -> None:
        assert self.workflow.version == len(self.events)
        survives_storage(self.workflow)


TestWorkflowMachine = WorkflowMachine.TestCase
TestWorkflowMachine.settings = MACHINE_SETTINGS
