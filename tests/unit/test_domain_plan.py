"""Plan rules: drafting, editing, submitting under a snapshot, voting, expiry, withdrawal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from domain.errors import DomainError
from domain.plan import Plan, PlanError, PlanStatus
from domain.project import Project
from events.plan import (
    AiStep,
    HumanStep,
    PlanApprovalRecorded,
    PlanApproved,
    PlanDrafted,
    PlanEdited,
    PlanExpired,
    PlanRejected,
    PlanSubmitted,
    PlanWithdrawn,
)
from events.project import ApprovalPolicy
from tests.fakes import FakeClock

TRIO = ApprovalPolicy(approvers=("ana", "bo", "cy"), required_approvals=2)


def human(n: int) -> HumanStep:
    return HumanStep(step_id=UUID(int=n), title=f"step {n}", assignee="ana", instructions="do")


def ai(n: int) -> AiStep:
    return AiStep(step_id=UUID(int=n), title=f"step {n}", persona_id=UUID(int=99), input="go")


def drafted(clock: FakeClock, *, steps: int = 2) -> Plan:
    return Plan.draft(
        plan_id=uuid4(),
        project_id=uuid4(),
        title="Launch",
        steps=tuple(human(n) if n % 2 else ai(n) for n in range(1, steps + 1)),
        at=clock.now(),
    )


def submitted(clock: FakeClock, policy: ApprovalPolicy = TRIO, *, steps: int = 2) -> Plan:
    plan = drafted(clock, steps=steps)
    plan.submit(policy=policy, at=clock.now())
    plan.pull_events()
    return plan


def kinds(plan: Plan) -> list[type]:
    return [type(recorded.event) for recorded in plan.pull_events()]


def test_draft_records_plan_drafted_as_version_one() -> None:
    clock = FakeClock()
    plan = drafted(clock)
    [recorded] = plan.pending_events
    assert isinstance(recorded.event, PlanDrafted)
    assert (recorded.aggregate_type, recorded.aggregate_id, recorded.aggregate_version) == (
        "plan",
        plan.id,
        1,
    )
    assert recorded.occurred_at == clock.now()
    assert (plan.version, plan.persisted_version, plan.status) == (1, 0, PlanStatus.DRAFT)
    plan.pull_events()
    assert (plan.pending_events, plan.persisted_version) == ((), 1)


def test_edit_changes_a_draft_and_records_the_whole_plan() -> None:
    plan = drafted(FakeClock())
    plan.pull_events()
    plan.edit(steps=(human(7),), at=FakeClock().now())
    [recorded] = plan.pull_events()
    assert recorded.event == PlanEdited(plan_id=plan.id, title="Launch", steps=(human(7),))


def test_edit_needs_something_to_change() -> None:
    with pytest.raises(PlanError) as caught:
        drafted(FakeClock()).edit(at=FakeClock().now())
    assert caught.value.code == "plan-nothing-to-edit"


def test_edit_after_submit_is_refused() -> None:
    plan = submitted(FakeClock())
    with pytest.raises(PlanError) as caught:
        plan.edit(title="Changed", at=FakeClock().now())
    assert caught.value.code == "plan-not-draft"
    assert isinstance(caught.value, DomainError)


def test_duplicate_step_ids_are_refused() -> None:
    with pytest.raises(PlanError) as caught:
        drafted(FakeClock()).edit(steps=(human(1), ai(1)), at=FakeClock().now())
    assert caught.value.code == "plan-duplicate-step"


def test_plan_without_steps_cannot_be_submitted() -> None:
    plan = drafted(FakeClock(), steps=0)
    with pytest.raises(PlanError) as caught:
        plan.submit(policy=TRIO, at=FakeClock().now())
    assert caught.value.code == "plan-has-no-steps"


def test_submit_records_the_policy_snapshot_and_deadline() -> None:
    clock = FakeClock()
    policy = TRIO.model_copy(update={"approval_deadline": timedelta(hours=2)})
    plan = drafted(clock)
    plan.pull_events()
    plan.submit(policy=policy, at=clock.now())
    [recorded] = plan.pull_events()
    assert recorded.event == PlanSubmitted(
        plan_id=plan.id,
        project_id=plan.project_id,
        step_count=2,
        policy=policy,
        deadline=clock.now() + timedelta(hours=2),
    )


def test_quorum_of_distinct_approvers_approves_the_plan() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    plan.approve(approver="ana", comment=None, at=clock.now())
    statuses = [plan.status]
    plan.approve(approver="cy", comment="fine", at=clock.now())
    events = [recorded.event for recorded in plan.pull_events()]
    assert [type(e) for e in events] == [PlanApprovalRecorded, PlanApprovalRecorded, PlanApproved]
    assert events[-1] == PlanApproved(
        plan_id=plan.id, project_id=plan.project_id, approvers=("ana", "cy"), auto=False
    )
    assert [*statuses, plan.status] == [PlanStatus.SUBMITTED, PlanStatus.APPROVED]


def test_second_vote_by_the_same_approver_is_refused() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    plan.approve(approver="ana", comment=None, at=clock.now())
    with pytest.raises(PlanError) as again:
        plan.approve(approver="ana", comment="really", at=clock.now())
    with pytest.raises(PlanError) as changed_mind:
        plan.reject(approver="ana", reason="on second thought", at=clock.now())
    assert again.value.code == changed_mind.value.code == "plan-duplicate-vote"


def test_only_approvers_in_the_snapshot_may_vote() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    with pytest.raises(PlanError) as caught:
        plan.approve(approver="mallory", comment=None, at=clock.now())
    assert caught.value.code == "plan-not-an-approver"


def test_later_policy_change_does_not_affect_a_submitted_plan() -> None:
    clock = FakeClock()
    project = Project.create(project_id=uuid4(), name="Apollo", policy=TRIO, at=clock.now())
    plan = submitted(clock, project.policy)
    project.change_policy(ApprovalPolicy(approvers=("dee",), required_approvals=1), at=clock.now())
    with pytest.raises(PlanError) as caught:
        plan.approve(approver="dee", comment=None, at=clock.now())
    assert caught.value.code == "plan-not-an-approver"
    plan.approve(approver="ana", comment=None, at=clock.now())
    assert plan.status is PlanStatus.SUBMITTED  # still needs the snapshot's two approvals
    assert plan.policy == TRIO


def test_rejection_rejects_plan_regardless_of_existing_approvals() -> None:
    clock = FakeClock()
    plan = submitted(clock, ApprovalPolicy(approvers=("ana", "bo", "cy"), required_approvals=3))
    plan.approve(approver="ana", comment=None, at=clock.now())
    plan.approve(approver="bo", comment=None, at=clock.now())
    plan.reject(approver="cy", reason="too risky", at=clock.now())
    assert kinds(plan)[-1] is PlanRejected
    assert (plan.status, plan.rejected_by, plan.reason) == (
        PlanStatus.REJECTED,
        "cy",
        "too risky",
    )


def test_rejecting_an_approved_plan_is_refused() -> None:
    clock = FakeClock()
    plan = submitted(clock, ApprovalPolicy(approvers=("ana", "bo"), required_approvals=1))
    plan.approve(approver="ana", comment=None, at=clock.now())
    with pytest.raises(PlanError) as caught:
        plan.reject(approver="bo", reason="late", at=clock.now())
    assert caught.value.code == "plan-not-submitted"


def test_small_plan_is_auto_approved_right_after_submit() -> None:
    clock = FakeClock()
    plan = drafted(clock, steps=2)
    plan.pull_events()
    policy = TRIO.model_copy(update={"auto_approve_max_steps": 2})
    plan.submit(policy=policy, at=clock.now())
    events = [recorded.event for recorded in plan.pull_events()]
    assert [type(e) for e in events] == [PlanSubmitted, PlanApproved]
    assert events[1] == PlanApproved(
        plan_id=plan.id, project_id=plan.project_id, approvers=(), auto=True
    )
    assert plan.version == 3


def test_plan_expires_only_from_its_deadline_on() -> None:
    clock = FakeClock()
    plan = submitted(clock, TRIO.model_copy(update={"approval_deadline": timedelta(hours=1)}))
    clock.advance(timedelta(minutes=59))
    with pytest.raises(PlanError) as early:
        plan.expire(at=clock.now())
    assert early.value.code == "plan-deadline-not-reached"
    plan.approve(approver="ana", comment=None, at=clock.now())
    clock.advance(timedelta(minutes=1))
    with pytest.raises(PlanError) as late_vote:
        plan.approve(approver="bo", comment=None, at=clock.now())
    assert late_vote.value.code == "plan-deadline-passed"
    plan.expire(at=clock.now())
    assert kinds(plan)[-1] is PlanExpired
    assert plan.status is PlanStatus.EXPIRED


def test_plan_without_deadline_never_expires() -> None:
    plan = submitted(FakeClock())
    with pytest.raises(PlanError) as caught:
        plan.expire(at=FakeClock().advance(timedelta(days=400)))
    assert caught.value.code == "plan-has-no-deadline"


@pytest.mark.parametrize("submit_first", [False, True])
def test_open_plan_can_be_withdrawn(submit_first: bool) -> None:
    clock = FakeClock()
    plan = submitted(clock) if submit_first else drafted(clock)
    plan.withdraw(reason="obsolete", at=clock.now())
    assert kinds(plan)[-1] is PlanWithdrawn
    assert plan.status is PlanStatus.WITHDRAWN


def test_decided_plan_cannot_be_withdrawn() -> None:
    clock = FakeClock()
    plan = submitted(clock, TRIO.model_copy(update={"auto_approve_max_steps": 5}))
    with pytest.raises(PlanError) as caught:
        plan.withdraw(reason=None, at=clock.now())
    assert caught.value.code == "plan-not-open"


def test_refused_command_changes_nothing() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    plan.approve(approver="ana", comment=None, at=clock.now())
    before, version, pending = plan.to_state(), plan.version, plan.pending_events
    with pytest.raises(PlanError):
        plan.approve(approver="ana", comment=None, at=clock.now())
    assert (plan.to_state(), plan.version, plan.pending_events) == (before, version, pending)


def test_state_survives_json_and_rebuild() -> None:
    clock = FakeClock()
    plan = submitted(clock, TRIO.model_copy(update={"approval_deadline": timedelta(hours=3)}))
    plan.approve(approver="bo", comment=None, at=clock.now())
    plan.pull_events()
    stored = json.loads(json.dumps(plan.to_state()))
    rebuilt = Plan.from_state(stored, version=plan.version)
    assert rebuilt.to_state() == plan.to_state()
    assert (rebuilt.version, rebuilt.persisted_version, rebuilt.policy) == (3, 3, plan.policy)
    rebuilt.approve(approver="cy", comment=None, at=clock.now())
    assert rebuilt.status is PlanStatus.APPROVED


def test_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        drafted(FakeClock(datetime(2026, 1, 1)))  # noqa: DTZ001
    assert FakeClock().now().tzinfo is UTC
