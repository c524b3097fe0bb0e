"""The approval consumer: asks the approvers, applies auto-approval, arms and clears timers.

On `PlanSubmitted` it sends, through the outbox as `system:approval`:

- `AutoApprovePlan` with the rule that approves the plan on its own, when the project's
  policy has one for it (`domain.policies.auto_approve_rule`); nothing else is needed then;
- else `RequestApprovals` (the plan records one `ApprovalRequested` per approver, which the
  notification consumer delivers), a reminder timer for each of the policy's reminder
  times (`domain.policies.reminder_policy`: by default at half-time and one hour before the
  deadline → `RemindApprovers` → `ApprovalReminderDue`), and the deadline timer
  (→ `ExpirePlan`).

On a decision (`PlanApproved`, `PlanRejected`, `PlanExpired`, `PlanWithdrawn`) it cancels
the plan's timers. The timers are the scheduler's (`infra.scheduler.timers`), written in
the same transaction as the inbox row, so a redelivery neither sends twice nor arms twice
(timer keys are per plan, the commands' effects are the plan's). A timer that fires after a
decision anyway finds the plan decided: the domain refuses the late `ExpirePlan` and a late
reminder reminds nobody. Ordered per plan, so a plan's decision is never handled before its
submission.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.policies import auto_approve_rule, reminder_policy
from events import Actor
from events.approval import AutoApprovePlan, RemindApprovers, RequestApprovals
from events.plan import (
    ExpirePlan,
    PlanApproved,
    PlanExpired,
    PlanRejected,
    PlanSubmitted,
    PlanWithdrawn,
)
from infra.consumers import Consumer, Ordered
from infra.message_context import MessageContext
from infra.scheduler.timers import cancel, schedule

if TYPE_CHECKING:
    from uuid import UUID

    from events import Envelope
    from infra.db.uow import UnitOfWork

NAME = "approval"
ACTOR = Actor.system(NAME)
PARTITIONS = 4


def timer_group(plan_id: UUID) -> str:
    """The group of a plan's approval timers (what a decision cancels)."""
    return f"approval:{plan_id}"


async def plan_submitted(envelope: Envelope[PlanSubmitted], uow: UnitOfWork) -> None:
    """Ask the approvers, or approve by rule; arm the reminders and the deadline."""
    submitted = envelope.data
    plan_id, context = submitted.plan_id, MessageContext.caused_by(envelope, actor=ACTOR)
    rule = auto_approve_rule(submitted.policy, submitted.step_count)
    if rule is not None:
        await uow.outbox.add_command(AutoApprovePlan(plan_id=plan_id, rule=rule), context=context)
        return
    await uow.outbox.add_command(RequestApprovals(plan_id=plan_id), context=context)
    if submitted.deadline is None:
        return
    group = timer_group(plan_id)
    reminders = reminder_policy(
        envelope.occurred_at, submitted.deadline, submitted.policy.remind_before
    )
    for n, due in enumerate(reminders, start=1):
        reminder = RemindApprovers(plan_id=plan_id, reminder=n)
        schedule(uow, key=f"{group}:reminder:{n}", due=due, command=reminder, group=group)
    expire = ExpirePlan(plan_id=plan_id)
    schedule(uow, key=f"{group}:deadline", due=submitted.deadline, command=expire, group=group)


Decision = PlanApproved | PlanRejected | PlanExpired | PlanWithdrawn


async def plan_decided(envelope: Envelope[Decision], uow: UnitOfWork) -> None:
    """A decision: the plan's reminders and deadline are cancelled."""
    cancel(uow, group=timer_group(envelope.data.plan_id))


CONSUMER = Consumer(
    name=NAME,
    handlers={
        PlanSubmitted: plan_submitted,
        PlanApproved: plan_decided,
        PlanRejected: plan_decided,
        PlanExpired: plan_decided,
        PlanWithdrawn: plan_decided,
    },
    ordered=Ordered(partitions=PARTITIONS),
)
