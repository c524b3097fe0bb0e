"""Approval commands the command processor decides: requests, reminders, auto-approval.

`RequestApprovals`, `RemindApprovers` and `AutoApprovePlan` come from hisho's approval
consumer (system only: the processor checks); `RequestApproval` from a person: the plan's
submitter, the project's owner or an admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from events.approval import AutoApprovePlan, RemindApprovers, RequestApproval, RequestApprovals

if TYPE_CHECKING:
    from consumers.command_handlers import Decision, Handler
    from events import Command
    from infra.db.repositories import Aggregates


async def request_approvals(
    command: RequestApprovals, aggregates: Aggregates, ctx: Decision
) -> None:
    """RequestApprovals -> Plan.request_approvals (once per plan)."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.request_approvals(by=ctx.actor, at=ctx.at)


async def request_approval(command: RequestApproval, aggregates: Aggregates, ctx: Decision) -> None:
    """RequestApproval -> Plan.request_approval (an ad-hoc approver of this plan)."""
    plan = await aggregates.plans.require(command.plan_id)
    project = await aggregates.projects.require(plan.project_id)
    plan.request_approval(command.approver, by=ctx.actor, owner=project.owner, at=ctx.at)


async def remind_approvers(command: RemindApprovers, aggregates: Aggregates, ctx: Decision) -> None:
    """RemindApprovers -> Plan.remind (nothing once the plan is decided)."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.remind(command.reminder, at=ctx.at)


async def auto_approve_plan(
    command: AutoApprovePlan, aggregates: Aggregates, ctx: Decision
) -> None:
    """AutoApprovePlan -> Plan.auto_approve by the stated rule."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.auto_approve(command.rule, at=ctx.at)


HANDLERS: dict[type[Command], Handler] = {
    RequestApprovals: request_approvals,
    RequestApproval: request_approval,
    RemindApprovers: remind_approvers,
    AutoApprovePlan: auto_approve_plan,
}
