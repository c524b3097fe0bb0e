"""Plan rules: drafting, editing, submitting under a snapshot, voting, expiry, withdrawal.

A vote counts for the actor who sends it; an admin may vote on behalf of an approver, and the
recorded vote names both (`approver`, `cast_by`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest

from domain.errors import FORBIDDEN, DomainError
from domain.plan import Plan
from domain.plan_state import PlanError, PlanStatus
from domain.project import Project
from events import Actor
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

if TYPE_CHECKING:
    from collections.abc import Callable

ANA, BO, CY = Actor.of("key:ana"), Actor.of("key:bo"), Actor.of("user:https://id.test/cy")
SAM = Actor.of("key:sam")  # submits the plans; no approver
ROOT = Actor.of("key:root", admin=True)  # an admin, no approver either
TRIO = ApprovalPolicy(approvers=(ANA.principal, BO.principal, CY.principal), required_approvals=2)


def human(n: int) -> HumanStep:
    return HumanStep(
        step_id=UUID(int=n), title=f"step {n}", assignee=ANA.principal, instructions="do"
    )


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
    plan.submit(policy=policy, by=SAM, at=clock.now())
    plan.pull_events()
    return plan


def approve(plan: Plan, by: Actor, clock: FakeClock, *, on_behalf_of: str | None = None) -> None:
    plan.approve(by=by, on_behalf_of=on_behalf_of, comment=None, at=clock.now())


def reject(plan: Plan, by: Actor, clock: FakeClock, *, on_behalf_of: str | None = None) -> None:
    plan.reject(by=by, on_behalf_of=on_behalf_of, reason="no", at=clock.now())


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
    assert recorded.event == PlanEdited(
        plan_id=plan.id, project_id=plan.project_id, title="Launch", steps=(human(7),)
    )


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
        plan.submit(policy=TRIO, by=SAM, at=FakeClock().now())
    assert caught.value.code == "plan-has-no-steps"


def test_submit_records_the_policy_snapshot_and_deadline() -> None:
    clock = FakeClock()
    policy = TRIO.model_copy(update={"approval_deadline": timedelta(hours=2)})
    plan = drafted(clock)
    plan.pull_events()
    plan.submit(policy=policy, by=SAM, at=clock.now())
    [recorded] = plan.pull_events()
    assert recorded.event == PlanSubmitted(
        plan_id=plan.id,
        project_id=plan.project_id,
        title="Launch",
        submitted_by="key:sam",
        step_count=2,
        policy=policy,
        deadline=clock.now() + timedelta(hours=2),
    )


def test_quorum_of_distinct_approvers_approves_the_plan() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    approve(plan, ANA, clock)
    statuses = [plan.status]
    plan.approve(by=CY, on_behalf_of=None, comment="fine", at=clock.now())
    events = [recorded.event for recorded in plan.pull_events()]
    assert [type(e) for e in events] == [PlanApprovalRecorded, PlanApprovalRecorded, PlanApproved]
    assert events[-1] == PlanApproved(
        plan_id=plan.id,
        project_id=plan.project_id,
        title="Launch",
        submitted_by="key:sam",
        approvers=("key:ana", "user:https://id.test/cy"),
        auto=False,
    )
    assert [*statuses, plan.status] == [PlanStatus.SUBMITTED, PlanStatus.APPROVED]


def test_second_vote_by_the_same_approver_is_refused() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    approve(plan, ANA, clock)
    with pytest.raises(PlanError) as again:
        plan.approve(by=ANA, on_behalf_of=None, comment="really", at=clock.now())
    with pytest.raises(PlanError) as changed_mind:
        plan.reject(by=ANA, on_behalf_of=None, reason="on second thought", at=clock.now())
    with pytest.raises(PlanError) as by_an_admin:
        approve(plan, ROOT, clock, on_behalf_of=ANA.principal)
    assert again.value.code == changed_mind.value.code == "plan-duplicate-vote"
    assert by_an_admin.value.code == "plan-duplicate-vote"


def test_only_approvers_in_the_snapshot_may_vote() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    with pytest.raises(PlanError) as caught:
        approve(plan, Actor.of("key:mallory"), clock)
    assert (caught.value.code, caught.value.status) == ("plan-not-an-approver", FORBIDDEN)
    assert plan.approvals == ()


def test_later_policy_change_does_not_affect_a_submitted_plan() -> None:
    clock = FakeClock()
    project = Project.create(project_id=uuid4(), name="Apollo", policy=TRIO, by=SAM, at=clock.now())
    plan = submitted(clock, project.policy)
    dee = Actor.of("key:dee")
    only_dee = ApprovalPolicy(approvers=(dee.principal,), required_approvals=1)
    project.change_policy(only_dee, by=SAM, at=clock.now())
    with pytest.raises(PlanError) as caught:
        approve(plan, dee, clock)
    assert caught.value.code == "plan-not-an-approver"
    approve(plan, ANA, clock)
    assert plan.status is PlanStatus.SUBMITTED  # still needs the snapshot's two approvals
    assert plan.policy == TRIO


def test_rejection_rejects_plan_regardless_of_existing_approvals() -> None:
    clock = FakeClock()
    plan = submitted(clock, TRIO.model_copy(update={"required_approvals": 3}))
    approve(plan, ANA, clock)
    approve(plan, BO, clock)
    plan.reject(by=CY, on_behalf_of=None, reason="too risky", at=clock.now())
    assert kinds(plan)[-1] is PlanRejected
    assert (plan.status, plan.rejected_by, plan.reason) == (
        PlanStatus.REJECTED,
        CY.principal,
        "too risky",
    )


def test_rejecting_an_approved_plan_is_refused() -> None:
    clock = FakeClock()
    plan = submitted(clock, TRIO.model_copy(update={"required_approvals": 1}))
    approve(plan, ANA, clock)
    with pytest.raises(PlanError) as caught:
        plan.reject(by=BO, on_behalf_of=None, reason="late", at=clock.now())
    assert caught.value.code == "plan-not-submitted"


def test_submit_does_not_approve_by_itself_the_rule_is_applied_after() -> None:
    clock = FakeClock()
    plan = drafted(clock, steps=2)
    plan.pull_events()
    policy = TRIO.model_copy(update={"auto_approve_max_steps": 2})
    plan.submit(policy=policy, by=SAM, at=clock.now())
    assert [type(r.event) for r in plan.pull_events()] == [PlanSubmitted]
    plan.auto_approve("auto_approve_max_steps: 2 step(s)", at=clock.now())
    (approved,) = [recorded.event for recorded in plan.pull_events()]
    assert approved == PlanApproved(
        plan_id=plan.id,
        project_id=plan.project_id,
        title="Launch",
        submitted_by="key:sam",
        approvers=(),
        auto=True,
        rule="auto_approve_max_steps: 2 step(s)",
    )
    assert plan.version == 3


def test_plan_expires_only_from_its_deadline_on() -> None:
    clock = FakeClock()
    plan = submitted(clock, TRIO.model_copy(update={"approval_deadline": timedelta(hours=1)}))
    clock.advance(timedelta(minutes=59))
    with pytest.raises(PlanError) as early:
        plan.expire(at=clock.now())
    assert early.value.code == "plan-deadline-not-reached"
    approve(plan, ANA, clock)
    clock.advance(timedelta(minutes=1))
    with pytest.raises(PlanError) as late_vote:
        approve(plan, BO, clock)
    assert late_vote.value.code == "plan-deadline-passed"
    plan.expire(at=clock.now())
    events = [recorded.event for recorded in plan.pull_events()]
    assert events[-1] == PlanExpired(
        plan_id=plan.id,
        project_id=plan.project_id,
        title="Launch",
        submitted_by="key:sam",
        deadline=clock.now(),
    )
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
    events = [recorded.event for recorded in plan.pull_events()]
    assert events[-1] == PlanWithdrawn(
        plan_id=plan.id, project_id=plan.project_id, title="Launch", reason="obsolete"
    )
    assert plan.status is PlanStatus.WITHDRAWN


def test_decided_plan_cannot_be_withdrawn() -> None:
    clock = FakeClock()
    plan = submitted(clock, TRIO.model_copy(update={"auto_approve_max_steps": 5}))
    plan.auto_approve("small", at=clock.now())
    with pytest.raises(PlanError) as caught:
        plan.withdraw(reason=None, at=clock.now())
    assert caught.value.code == "plan-not-open"


def test_refused_command_changes_nothing() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    approve(plan, ANA, clock)
    before, version, pending = plan.to_state(), plan.version, plan.pending_events
    with pytest.raises(PlanError):
        approve(plan, ANA, clock)
    with pytest.raises(PlanError):
        approve(plan, BO, clock, on_behalf_of=CY.principal)
    assert (plan.to_state(), plan.version, plan.pending_events) == (before, version, pending)


def test_state_survives_json_and_rebuild() -> None:
    clock = FakeClock()
    plan = submitted(clock, TRIO.model_copy(update={"approval_deadline": timedelta(hours=3)}))
    approve(plan, BO, clock)
    plan.pull_events()
    stored = json.loads(json.dumps(plan.to_state()))
    rebuilt = Plan.from_state(stored, version=plan.version)
    assert rebuilt.to_state() == plan.to_state()
    assert (rebuilt.version, rebuilt.persisted_version, rebuilt.policy) == (3, 3, plan.policy)
    assert rebuilt.submitted_by == "key:sam"
    approve(rebuilt, CY, clock)
    assert rebuilt.status is PlanStatus.APPROVED
    assert rebuilt.pull_events()[-1].event == PlanApproved(
        plan_id=plan.id,
        project_id=plan.project_id,
        title="Launch",
        submitted_by="key:sam",
        approvers=(BO.principal, CY.principal),
        auto=False,
    )


def test_state_stored_before_submitters_were_recorded_still_loads() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    stored = json.loads(json.dumps(plan.to_state()))
    del stored["submitted_by"], stored["workflow_id"]
    rebuilt = Plan.from_state(stored, version=plan.version)
    assert (rebuilt.submitted_by, rebuilt.workflow_id) == (None, None)
    reject(rebuilt, ANA, clock)
    [recorded] = rebuilt.pull_events()
    assert isinstance(recorded.event, PlanRejected)
    assert recorded.event.submitted_by is None


def test_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        drafted(FakeClock(datetime(2026, 1, 1)))  # noqa: DTZ001
    assert FakeClock().now().tzinfo is UTC


def test_a_vote_counts_for_the_actor_who_sends_it() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    plan.approve(by=BO, on_behalf_of=None, comment="ok", at=clock.now())
    plan.approve(by=ANA, on_behalf_of=ANA.principal, comment=None, at=clock.now())  # as self
    first, second, _ = [recorded.event for recorded in plan.pull_events()]
    assert first == PlanApprovalRecorded(
        plan_id=plan.id,
        project_id=plan.project_id,
        title="Launch",
        approver="key:bo",
        cast_by="key:bo",
        comment="ok",
        approvals=1,
        required_approvals=2,
    )
    assert isinstance(second, PlanApprovalRecorded)
    assert (second.approver, second.cast_by) == ("key:ana", "key:ana")
    assert plan.approvals == ("key:bo", "key:ana")


def test_an_admin_votes_on_behalf_of_an_approver_and_is_recorded_as_the_caster() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    approve(plan, ROOT, clock, on_behalf_of=BO.principal)
    [recorded] = plan.pull_events()
    assert isinstance(recorded.event, PlanApprovalRecorded)
    assert (recorded.event.approver, recorded.event.cast_by) == ("key:bo", "key:root")
    assert plan.approvals == ("key:bo",)  # the vote counts for the approver, not the admin
    plan.reject(by=ROOT, on_behalf_of=CY.principal, reason="too risky", at=clock.now())
    [rejected] = [recorded.event for recorded in plan.pull_events()]
    assert rejected == PlanRejected(
        plan_id=plan.id,
        project_id=plan.project_id,
        title="Launch",
        submitted_by="key:sam",
        approver=CY.principal,
        cast_by="key:root",
        reason="too risky",
    )
    assert (plan.status, plan.rejected_by) == (PlanStatus.REJECTED, CY.principal)


@pytest.mark.parametrize(
    "sender",
    [ANA, SAM, Actor.system("scheduler")],
    ids=["an-approver", "the-submitter", "hisho"],
)
@pytest.mark.parametrize("vote", [approve, reject])
def test_only_an_admin_may_vote_on_behalf_of_someone_else(
    sender: Actor, vote: Callable[..., None]
) -> None:
    clock = FakeClock()
    plan = submitted(clock)
    before = plan.to_state()
    with pytest.raises(PlanError) as caught:
        vote(plan, sender, clock, on_behalf_of=BO.principal)
    assert (caught.value.code, caught.value.status) == ("plan-vote-on-behalf-forbidden", 403)
    assert (plan.to_state(), plan.pending_events) == (before, ())


@pytest.mark.parametrize("on_behalf_of", [None, "key:mallory"], ids=["as-self", "on-behalf"])
def test_an_admin_vote_still_needs_an_approver_of_the_snapshot(on_behalf_of: str | None) -> None:
    clock = FakeClock()
    plan = submitted(clock)
    with pytest.raises(PlanError) as caught:
        approve(plan, ROOT, clock, on_behalf_of=on_behalf_of)
    assert (caught.value.code, caught.value.status) == ("plan-not-an-approver", FORBIDDEN)


def test_a_vote_on_behalf_is_refused_before_the_plan_is_submitted() -> None:
    clock = FakeClock()
    plan = drafted(clock)
    with pytest.raises(PlanError) as caught:
        approve(plan, ROOT, clock, on_behalf_of=ANA.principal)
    assert caught.value.code == "plan-not-submitted"
