"""Random command sequences on a plan keep its approval invariants (stateful test).

Votes are sent by approvers, by people who are not, and by an actor voting on behalf of an
approver (refused unless the actor is an admin).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import uuid4

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from domain.plan import Plan
from domain.plan_state import PlanStatus
from domain.policies import auto_approve_rule
from domain.project import Project
from events import Actor
from events.plan import PlanApprovalRecorded, PlanRejected
from events.project import ApprovalPolicy
from tests.fakes import FakeClock
from tests.unit.test_domain_support import (
    MACHINE_SETTINGS,
    STEP_LISTS,
    attempt,
    survives_storage,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from domain.aggregate import RecordedEvent
    from events.plan import PlanStep

APPROVERS = ("key:ana", "key:bo", "user:https://id.test/cy", "persona:di")
VOTERS = st.sampled_from((*APPROVERS, "key:mallory"))
OWNER = Actor.of("key:sam")  # owns the project and submits the plan
DELEGATE = "key:root"  # votes on behalf of approvers (an admin, or not, at random)


@st.composite
def policies(draw: st.DrawFn) -> ApprovalPolicy:
    approvers = draw(st.lists(st.sampled_from(APPROVERS), min_size=1, unique=True))
    minutes = st.integers(10, 120).map(lambda m: timedelta(minutes=m))
    return ApprovalPolicy(
        approvers=tuple(approvers),
        required_approvals=draw(st.integers(1, len(approvers))),
        auto_approve_max_steps=draw(st.sampled_from((0, 0, 1, 2))),  # mostly off
        approval_deadline=draw(st.none() | minutes),
    )


P = PlanStatus
PLAN_EDGES = {(P.DRAFT, P.DRAFT), (P.DRAFT, P.SUBMITTED), (P.DRAFT, P.APPROVED)}
PLAN_EDGES |= {(P.DRAFT, P.WITHDRAWN), (P.SUBMITTED, P.SUBMITTED)}
PLAN_EDGES |= {(P.SUBMITTED, s) for s in (P.APPROVED, P.REJECTED, P.EXPIRED, P.WITHDRAWN)}


class PlanMachine(RuleBasedStateMachine):
    """Drafts, edits, submits, votes on, expires and withdraws one plan at random."""

    clock: FakeClock
    project: Project
    plan: Plan
    events: list[RecordedEvent]
    snapshot: ApprovalPolicy | None

    @initialize(steps=STEP_LISTS, policy=policies())
    def draft(self, steps: tuple[PlanStep, ...], policy: ApprovalPolicy) -> None:
        self.clock = FakeClock()
        now = self.clock.now()
        self.project = Project.create(project_id=uuid4(), name="P", policy=policy, by=OWNER, at=now)
        self.plan = Plan.draft(
            plan_id=uuid4(), project_id=self.project.id, title="T", steps=steps, at=now
        )
        self.events = self.plan.pull_events()
        self.snapshot = None

    def _do(self, action: Callable[[], object], expected: str | None) -> None:
        self.events += attempt(self.plan, lambda: self.plan.status, action, expected, PLAN_EDGES)

    @rule(steps=STEP_LISTS)
    def edit(self, steps: tuple[PlanStep, ...]) -> None:
        expected = None if self.plan.status is P.DRAFT else "plan-not-draft"
        self._do(lambda: self.plan.edit(steps=steps, at=self.clock.now()), expected)

    @rule()
    def submit(self) -> None:
        policy = self.project.policy
        expected = None
        if self.plan.status is not P.DRAFT:
            expected = "plan-not-draft"
        elif not self.plan.steps:
            expected = "plan-has-no-steps"
        self._do(lambda: self.plan.submit(policy=policy, by=OWNER, at=self.clock.now()), expected)
        if expected is None:
            self.snapshot = policy
            rule = auto_approve_rule(policy, len(self.plan.steps))
            if rule is not None:  # what the approval consumer does on PlanSubmitted
                self._do(lambda: self.plan.auto_approve(rule, at=self.clock.now()), None)
            small = len(self.plan.steps) <= policy.auto_approve_max_steps
            assert (self.plan.status is P.APPROVED) == small

    @rule(policy=policies())
    def change_project_policy(self, policy: ApprovalPolicy) -> None:
        if policy != self.project.policy:
            self.project.change_policy(policy, by=OWNER, at=self.clock.now())

    def _vote_refusal(self, voter: str) -> str | None:
        if self.plan.status is not P.SUBMITTED:
            return "plan-not-submitted"
        assert self.snapshot is not None
        if voter not in self.snapshot.approvers:
            return "plan-not-an-approver"
        if voter in self.plan.approvals:
            return "plan-duplicate-vote"
        if self.plan.deadline is not None and self.clock.now() >= self.plan.deadline:
            return "plan-deadline-passed"
        return None

    def _vote(self, sender: Actor, on_behalf_of: str | None, *, approve: bool) -> None:
        voter = sender.principal if on_behalf_of is None else on_behalf_of
        expected = self._vote_refusal(voter)
        if voter != sender.principal and not sender.admin:
            expected = "plan-vote-on-behalf-forbidden"  # whatever the plan's state
        at = self.clock.now()
        if approve:
            vote: Callable[[], None] = lambda: self.plan.approve(  # noqa: E731
                by=sender, on_behalf_of=on_behalf_of, comment=None, at=at
            )
        else:
            vote = lambda: self.plan.reject(  # noqa: E731
                by=sender, on_behalf_of=on_behalf_of, reason="no", at=at
            )
        before = len(self.events)
        self._do(vote, expected)
        if expected is None:
            cast = self.events[before].event
            assert isinstance(cast, PlanApprovalRecorded if approve else PlanRejected)
            assert (cast.approver, cast.cast_by) == (voter, sender.principal)
            assert approve or self.plan.status is P.REJECTED

    @rule(voter=VOTERS)
    def approve(self, voter: str) -> None:
        self._vote(Actor.of(voter), None, approve=True)

    @rule(voter=VOTERS)
    def reject(self, voter: str) -> None:
        self._vote(Actor.of(voter), None, approve=False)

    @rule(voter=VOTERS, admin=st.booleans(), approve=st.booleans())
    def vote_on_behalf(self, voter: str, admin: bool, approve: bool) -> None:
        self._vote(Actor.of(DELEGATE, admin=admin), voter, approve=approve)

    @rule(data=st.data(), approve=st.booleans())
    def vote_as_a_pending_approver(self, data: st.DataObject, approve: bool) -> None:
        pending = [a for a in APPROVERS if a not in self.plan.approvals]
        if self.snapshot is not None:
            pending = [a for a in self.snapshot.approvers if a not in self.plan.approvals]
        if pending:
            voter = data.draw(st.sampled_from(pending))
            if data.draw(st.booleans()):
                self._vote(Actor.of(voter), None, approve=approve)
            else:
                self._vote(Actor.of(DELEGATE, admin=True), voter, approve=approve)

    @rule()
    def expire(self) -> None:
        expected = None
        if self.plan.status is not P.SUBMITTED:
            expected = "plan-not-submitted"
        elif self.plan.deadline is None:
            expected = "plan-has-no-deadline"
        elif self.clock.now() < self.plan.deadline:
            expected = "plan-deadline-not-reached"
        self._do(lambda: self.plan.expire(at=self.clock.now()), expected)

    @rule()
    def withdraw(self) -> None:
        expected = None if self.plan.status in {P.DRAFT, P.SUBMITTED} else "plan-not-open"
        self._do(lambda: self.plan.withdraw(reason=None, at=self.clock.now()), expected)

    @rule(minutes=st.integers(0, 150))
    def tick(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))

    @invariant()
    def approved_iff_quorum_or_auto_and_no_rejection(self) -> None:
        policy = self.plan.policy
        quorum = policy is not None and len(set(self.plan.approvals)) >= policy.required_approvals
        expected = (self.plan.auto_approved or quorum) and self.plan.rejected_by is None
        assert (self.plan.status is P.APPROVED) == expected

    @invariant()
    def votes_are_distinct_and_counted_against_the_submit_snapshot(self) -> None:
        assert self.plan.policy == self.snapshot
        assert len(set(self.plan.approvals)) == len(self.plan.approvals)
        if self.snapshot is not None:
            assert set(self.plan.approvals) <= set(self.snapshot.approvers)
        recorded = [e.event for e in self.events if isinstance(e.event, PlanApprovalRecorded)]
        assert [e.approver for e in recorded] == list(self.plan.approvals)
        assert DELEGATE not in self.plan.approvals  # a delegate's vote counts for the approver

    @invariant()
    def version_counts_every_event(self) -> None:
        assert self.plan.version == len(self.events)
        survives_storage(self.plan)


TestPlanMachine = PlanMachine.TestCase
TestPlanMachine.settings = MACHINE_SETTINGS
