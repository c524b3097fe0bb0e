"""Persona, project, plan and notification commands: one small function each, domain calls only.

Each function loads what the command names (a missing aggregate rejects the command), calls
the domain with the `Decision` (when, and by whom: the envelope's actor), and tracks new
aggregates; the command processor saves them and their events. A `DomainError` anywhere
rejects the command and nothing of it is saved. Work on a project's plans is for its
members (`Project.require_member`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from domain.notification import Notification, NotificationContent, notification_id_for
from domain.persona import Persona, PersonaError, PersonaProfile, PersonaStatus
from domain.plan import Plan
from domain.project import Project
from events.notification import SendNotification
from events.persona import RegisterPersona, RetirePersona, UpdatePersona
from events.plan import (
    ApprovePlan,
    DraftPlan,
    EditPlan,
    ExpirePlan,
    PlanStep,
    RejectPlan,
    SubmitPlan,
    WithdrawPlan,
)
from events.project import (
    AddProjectMember,
    ChangeApprovalPolicy,
    CreateProject,
    RemoveProjectMember,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from datetime import datetime
    from uuid import UUID

    from events import Actor, Command
    from infra.db.repositories import Aggregates
    from infra.people import PersonDirectory


@dataclass(frozen=True)
class Decision:
    """What a handler decides with besides the command: when, by whom, and with whom.

    `people` is the directory: recipients are looked up there, never copied into events.
    """

    at: datetime
    actor: Actor
    people: PersonDirectory


Handler: TypeAlias = "Callable[[Any, Aggregates, Decision], Awaitable[None]]"
"""Applies one command (of the type it is registered for) to the aggregates."""


async def register_persona(command: RegisterPersona, aggregates: Aggregates, ctx: Decision) -> None:
    """RegisterPersona -> Persona.register."""
    await aggregates.personas.require_absent(command.persona_id)
    profile = PersonaProfile(
        **command.model_dump(exclude={"persona_id", "permissions"}),
        permissions=command.permissions,
    )
    persona = Persona.register(persona_id=command.persona_id, profile=profile, at=ctx.at)
    aggregates.personas.add(persona)


async def update_persona(command: UpdatePersona, aggregates: Aggregates, ctx: Decision) -> None:
    """UpdatePersona -> Persona.update (fields left out stay)."""
    persona = await aggregates.personas.require(command.persona_id)
    persona.update(at=ctx.at, **command.model_dump(exclude={"persona_id"}))


async def retire_persona(command: RetirePersona, aggregates: Aggregates, ctx: Decision) -> None:
    """RetirePersona -> Persona.retire."""
    persona = await aggregates.personas.require(command.persona_id)
    persona.retire(reason=command.reason, at=ctx.at)


async def create_project(command: CreateProject, aggregates: Aggregates, ctx: Decision) -> None:
    """CreateProject -> Project.create, owned by the sender."""
    await aggregates.projects.require_absent(command.project_id)
    project = Project.create(
        project_id=command.project_id,
        name=command.name,
        policy=command.policy,
        by=ctx.actor,
        at=ctx.at,
    )
    aggregates.projects.add(project)


async def change_approval_policy(
    command: ChangeApprovalPolicy, aggregates: Aggregates, ctx: Decision
) -> None:
    """ChangeApprovalPolicy -> Project.change_policy (owner or admin)."""
    project = await aggregates.projects.require(command.project_id)
    project.change_policy(command.policy, by=ctx.actor, at=ctx.at)


async def add_project_member(
    command: AddProjectMember, aggregates: Aggregates, ctx: Decision
) -> None:
    """AddProjectMember -> Project.add_member (owner or admin)."""
    project = await aggregates.projects.require(command.project_id)
    project.add_member(command.member, by=ctx.actor, at=ctx.at)


async def remove_project_member(
    command: RemoveProjectMember, aggregates: Aggregates, ctx: Decision
) -> None:
    """RemoveProjectMember -> Project.remove_member (owner or admin)."""
    project = await aggregates.projects.require(command.project_id)
    project.remove_member(command.member, by=ctx.actor, at=ctx.at)


async def draft_plan(command: DraftPlan, aggregates: Aggregates, ctx: Decision) -> None:
    """DraftPlan -> Plan.draft, by a member, for an existing project and active personas."""
    await aggregates.plans.require_absent(command.plan_id)
    (await aggregates.projects.require(command.project_id)).require_member(ctx.actor)
    await _require_active_personas(command.steps, aggregates)
    plan = Plan.draft(
        plan_id=command.plan_id,
        project_id=command.project_id,
        title=command.title,
        steps=command.steps,
        settings=command.settings,
        at=ctx.at,
    )
    aggregates.plans.add(plan)


async def edit_plan(command: EditPlan, aggregates: Aggregates, ctx: Decision) -> None:
    """EditPlan -> Plan.edit, by a member; new AI steps must name active personas."""
    plan = await aggregates.plans.require(command.plan_id)
    await require_member(plan.project_id, aggregates, ctx.actor)
    if command.steps is not None:
        await _require_active_personas(command.steps, aggregates)
    plan.edit(title=command.title, steps=command.steps, at=ctx.at)


async def submit_plan(command: SubmitPlan, aggregates: Aggregates, ctx: Decision) -> None:
    """SubmitPlan -> Plan.submit by a member, under the project's current policy (snapshot)."""
    plan = await aggregates.plans.require(command.plan_id)
    project = await aggregates.projects.require(plan.project_id)
    project.require_member(ctx.actor)
    plan.submit(policy=project.policy, by=ctx.actor, at=ctx.at)


async def approve_plan(command: ApprovePlan, aggregates: Aggregates, ctx: Decision) -> None:
    """ApprovePlan -> Plan.approve: the sender's vote (or an admin's on behalf of one)."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.approve(
        by=ctx.actor, on_behalf_of=command.on_behalf_of, comment=command.comment, at=ctx.at
    )


async def reject_plan(command: RejectPlan, aggregates: Aggregates, ctx: Decision) -> None:
    """RejectPlan -> Plan.reject: the sender's vote (or an admin's on behalf of one)."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.reject(by=ctx.actor, on_behalf_of=command.on_behalf_of, reason=command.reason, at=ctx.at)


async def expire_plan(command: ExpirePlan, aggregates: Aggregates, ctx: Decision) -> None:
    """ExpirePlan -> Plan.expire (from its deadline on; system only)."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.expire(at=ctx.at)


async def withdraw_plan(command: WithdrawPlan, aggregates: Aggregates, ctx: Decision) -> None:
    """WithdrawPlan -> Plan.withdraw, by a member."""
    plan = await aggregates.plans.require(command.plan_id)
    await require_member(plan.project_id, aggregates, ctx.actor)
    plan.withdraw(reason=command.reason, at=ctx.at)


async def send_notification(
    command: SendNotification, aggregates: Aggregates, ctx: Decision
) -> None:
    """SendNotification -> Notification.request; a repeated dedup key is dropped, not an error.

    A recipient the directory does not hold (never registered, or erased) gets nothing:
    the notification is stored dropped, with the reason (`NotificationDropped`).
    """
    key = command.dedup_key
    notification_id = command.notification_id if key is None else notification_id_for(key)
    if key is not None and await aggregates.notifications.get(notification_id) is not None:
        return  # sent once already: a processed command with no events
    await aggregates.notifications.require_absent(notification_id)
    content = NotificationContent(
        **command.model_dump(exclude={"notification_id", "dedup_key"}), dedup_key=key
    )
    if await ctx.people.get(command.recipient) is None:
        reason = f"{command.recipient} is not in the people directory"
        notification = Notification.drop(
            notification_id=notification_id, content=content, reason=reason, at=ctx.at
        )
    else:
        notification = Notification.request(
            notification_id=notification_id, content=content, at=ctx.at
        )
    aggregates.notifications.add(notification)


async def require_member(project_id: UUID, aggregates: Aggregates, actor: Actor) -> None:
    """Refuse an actor who is not a member of the project (hisho and admins need no read)."""
    if not (actor.is_system or actor.admin):
        (await aggregates.projects.require(project_id)).require_member(actor)


async def _require_active_personas(steps: Iterable[PlanStep], aggregates: Aggregates) -> None:
    for step in steps:
        if step.kind == "ai":
            persona = await aggregates.personas.require(step.persona_id)
            if persona.status is PersonaStatus.RETIRED:
                raise PersonaError("persona-retired", f"persona {persona.id} is retired")


HANDLERS: dict[type[Command], Handler] = {
    RegisterPersona: register_persona,
    UpdatePersona: update_persona,
    RetirePersona: retire_persona,
    CreateProject: create_project,
    ChangeApprovalPolicy: change_approval_policy,
    AddProjectMember: add_project_member,
    RemoveProjectMember: remove_project_member,
    DraftPlan: draft_plan,
    EditPlan: edit_plan,
    SubmitPlan: submit_plan,
    ApprovePlan: approve_plan,
    RejectPlan: reject_plan,
    ExpirePlan: expire_plan,
    WithdrawPlan: withdraw_plan,
    SendNotification: send_notification,
}
