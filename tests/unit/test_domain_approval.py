"""A plan's approval requests, reminders, ad-hoc approvers and auto-approval; their policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.plan_state import PlanError, PlanStatus
from domain.policies import (
    ApprovalOutcome,
    approval_policy,
    auto_approve_rule,
    reminder_policy,
)
from events import Actor
from events.plan import ApprovalReminderDue, ApprovalRequested, PlanApproved
from tests.fakes import FakeClock
from tests.unit.test_domain_plan import ANA, BO, CY, ROOT, SAM, TRIO, approve, kinds, submitted

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEE = Actor.of("key:dee")


def test_reminders_by_default_at_half_time_and_one_hour_before() -> None:
    deadline = T0 + timedelta(hours=10)
    assert reminder_policy(T0, deadline, None) == [T0 + timedelta(hours=5), T0 + timedelta(hours=9)]


def test_reminders_only_strictly_between_submit_and_deadline() -> None:
    short = T0 + timedelta(hours=2)  # half-time and 1 h before coincide: one reminder
    assert reminder_policy(T0, short, None) == [T0 + timedelta(hours=1)]
    shorter = T0 + timedelta(minutes=30)  # 1 h before is before the submit: dropped
    assert reminder_policy(T0, shorter, None) == [T0 + timedelta(minutes=15)]
    policy = [timedelta(hours=1), timedelta(hours=3), timedelta(hours=3)]
    assert reminder_policy(T0, short, policy) == [T0 + timedelta(hours=1)]
    assert reminder_policy(T0, None, None) == []
    assert reminder_policy(T0, T0 + timedelta(hours=5), [timedelta(hours=5)]) == []  # at submit


def test_auto_approval_rule_states_the_limit_and_needs_a_step() -> None:
    small = TRIO.model_copy(update={"auto_approve_max_steps": 2})
    assert auto_approve_rule(small, 2) == (
        "auto_approve_max_steps: 2 step(s), at most 2 pass on their own"
    )
    assert auto_approve_rule(small, 3) is None
    assert auto_approve_rule(small, 0) is None
    assert auto_approve_rule(TRIO, 1) is None  # the rule is off by default


def test_ad_hoc_approvers_count_toward_the_quorum_any_rejection_wins() -> None:
    assert approval_policy(TRIO, ["key:dee", ANA.principal], rejected=False) is (
        ApprovalOutcome.PENDING
    )
    assert (
        approval_policy(TRIO, ["key:dee", ANA.principal], rejected=False, ad_hoc=["key:dee"])
        is ApprovalOutcome.APPROVED
    )
    assert (
        approval_policy(TRIO, [ANA.principal, BO.principal], rejected=True)
        is ApprovalOutcome.REJECTED
    )


def test_approvals_are_requested_once_per_approver_of_the_snapshot() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    plan.pull_events()
    system = Actor.system("approval")
    plan.request_approvals(by=system, at=clock.now())
    requested = [r.event for r in plan.pull_events()]
    assert [e.approver for e in requested if isinstance(e, ApprovalRequested)] == list(
        TRIO.approvers
    )
    assert all(isinstance(e, ApprovalRequested) and not e.ad_hoc for e in requested)
    plan.request_approvals(by=system, at=clock.now())  # a redelivered request: nothing more
    assert plan.pull_events() == []


def test_an_ad_hoc_approver_is_asked_by_the_submitter_and_then_votes_for_this_plan() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    with pytest.raises(PlanError) as refused:
        plan.request_approval(DEE.principal, by=ANA, owner="key:owner", at=clock.now())
    assert (refused.value.code, refused.value.status) == ("plan-not-requester", 403)
    plan.pull_events()
    plan.request_approval(DEE.principal, by=SAM, owner="key:owner", at=clock.now())
    (asked,) = [r.event for r in plan.pull_events()]
    assert isinstance(asked, ApprovalRequested)
    assert (asked.approver, asked.requested_by, asked.ad_hoc) == (
        DEE.principal,
        SAM.principal,
        True,
    )
    with pytest.raises(PlanError) as again:
        plan.request_approval(DEE.principal, by=ROOT, owner=None, at=clock.now())
    assert again.value.code == "plan-already-an-approver"
    approve(plan, DEE, clock)
    approve(plan, CY, clock)
    assert plan.status is PlanStatus.APPROVED
    assert PlanApproved in kinds(plan)


def test_the_project_owner_or_an_admin_may_ask_too() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    plan.request_approval(
        DEE.principal, by=Actor.of("key:owner"), owner="key:owner", at=clock.now()
    )
    plan.request_approval("key:eve", by=ROOT, owner="key:owner", at=clock.now())
    assert plan.ad_hoc_approvers == (DEE.principal, "key:eve")


def test_a_reminder_names_who_has_not_voted_and_is_nothing_once_decided() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    approve(plan, ANA, clock)
    plan.pull_events()
    plan.remind(1, at=clock.now())
    (due,) = [r.event for r in plan.pull_events()]
    assert isinstance(due, ApprovalReminderDue)
    assert (due.pending, due.reminder) == ((BO.principal, CY.principal), 1)
    approve(plan, BO, clock)
    plan.pull_events()
    plan.remind(2, at=clock.now())
    assert plan.pull_events() == []


def test_auto_approval_records_the_rule_and_a_decided_plan_is_not_approved_again() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    plan.auto_approve("small", at=clock.now())
    assert (plan.status, plan.auto_rule) == (PlanStatus.APPROVED, "small")
    with pytest.raises(PlanError) as caught:
        plan.auto_approve("small", at=clock.now())
    assert caught.value.code == "plan-not-submitted"


def test_a_plan_keeps_its_ad_hoc_approvers_and_requests_through_storage() -> None:
    clock = FakeClock()
    plan = submitted(clock)
    plan.request_approvals(by=Actor.system("approval"), at=clock.now())
    plan.request_approval(DEE.principal, by=SAM, owner=None, at=clock.now())
    restored = type(plan).from_state(plan.to_state(), version=plan.version)
    assert (restored.ad_hoc_approvers, restored.approvals_requested) == ((DEE.principal,), True)
