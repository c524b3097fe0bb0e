"""The pure policies: quorum, auto-approval, deadlines, retries and revisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.policies import (
    ApprovalOutcome,
    approval_policy,
    auto_approve_policy,
    deadline_policy,
    expiry_policy,
    retry_policy,
    revision_policy,
)
from events.project import ApprovalPolicy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ANA, BO, CY, MALLORY = "key:ana", "key:bo", "user:https://id.test/cy", "key:mallory"
TRIO = ApprovalPolicy(approvers=(ANA, BO, CY), required_approvals=2)
PRINCIPALS = st.sampled_from("abcdefxyz").map(lambda name: f"key:{name}")


def test_quorum_of_distinct_approvers_approves() -> None:
    assert approval_policy(TRIO, [ANA], rejected=False) is ApprovalOutcome.PENDING
    assert approval_policy(TRIO, [ANA, ANA], rejected=False) is ApprovalOutcome.PENDING
    assert approval_policy(TRIO, [ANA, CY], rejected=False) is ApprovalOutcome.APPROVED


def test_votes_of_people_outside_the_policy_do_not_count() -> None:
    assert approval_policy(TRIO, [ANA, MALLORY], rejected=False) is ApprovalOutcome.PENDING
    legacy_ana = "legacy:ana"  # the same name before ids were namespaced is someone else
    assert approval_policy(TRIO, [BO, legacy_ana], rejected=False) is ApprovalOutcome.PENDING


def test_rejection_rejects_plan_even_after_quorum() -> None:
    assert approval_policy(TRIO, [ANA, BO, CY], rejected=True) is ApprovalOutcome.REJECTED


@settings(max_examples=100)
@given(
    approvers=st.lists(PRINCIPALS, min_size=1, max_size=6, unique=True),
    votes=st.lists(PRINCIPALS, max_size=10),
    data=st.data(),
)
def test_approval_is_exactly_quorum_of_counted_votes(
    approvers: list[str], votes: list[str], data: st.DataObject
) -> None:
    required = data.draw(st.integers(1, len(approvers)))
    policy = ApprovalPolicy(approvers=tuple(approvers), required_approvals=required)
    counted = len(set(votes) & set(approvers))
    outcome = approval_policy(policy, votes, rejected=False)
    assert (outcome is ApprovalOutcome.APPROVED) == (counted >= required)


def test_auto_approve_covers_small_plans_only() -> None:
    policy = ApprovalPolicy(approvers=(ANA,), required_approvals=1, auto_approve_max_steps=2)
    assert [auto_approve_policy(policy, n) for n in (0, 1, 2, 3)] == [False, True, True, False]
    assert not auto_approve_policy(TRIO, 1)  # 0 turns auto-approval off


def test_deadline_is_submit_time_plus_policy_deadline() -> None:
    policy = TRIO.model_copy(update={"approval_deadline": timedelta(hours=4)})
    assert deadline_policy(policy, T0) == T0 + timedelta(hours=4)
    assert deadline_policy(TRIO, T0) is None


def test_expiry_starts_at_the_deadline() -> None:
    assert not expiry_policy(T0, T0 - timedelta(microseconds=1))
    assert expiry_policy(T0, T0)
    assert not expiry_policy(None, T0 + timedelta(days=999))


def test_retries_and_revisions_stop_at_their_maximum() -> None:
    assert [retry_policy(n, 3) for n in (0, 2, 3, 4)] == [True, True, False, False]
    assert [revision_policy(n, 2) for n in (0, 1, 2)] == [True, True, False]
