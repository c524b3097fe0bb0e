"""Persona, project, plan and notification commands: one small function each, domain calls only.

Each function loads what the command names (a missing aggregate rejects the command), calls
the domain, and tracks new aggregates; the command processor saves them and their events.
A `DomainError` anywhere rejects the command and nothing of it is saved.
"""

from __future__ import annotations

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
from events.project import ChangeApprovalPolicy, CreateProject

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from datetime import datetime

    from events import Command
    from infra.db.repositories import Aggregates

Handler: TypeAlias = "Callable[[Any, Aggregates, datetime], Awaitable[None]]"
"""Applies one command (of the type it is registered for) to the aggregates, at a time."""


async def register_persona(command: RegisterPersona, aggregates: Aggregates, at: datetime) -> None:
    """RegisterPersona -> Persona.register."""
    await aggregates.personas.require_absent(command.persona_id)
    profile = PersonaProfile(
        **command.model_dump(exclude={"persona_id", "permissions"}),
        permissions=command.permissions,
    )
    aggregates.personas.add(Persona.register(persona_id=command.persona_id, profile=profile, at=at))


async def update_persona(command: UpdatePersona, aggregates: Aggregates, at: datetime) -> None:
    """UpdatePersona -> Persona.update (fields left out stay)."""
    persona = await aggregates.personas.require(command.persona_id)
    persona.update(at=at, **command.model_dump(exclude={"persona_id"}))


async def retire_persona(command: RetirePersona, aggregates: Aggregates, at: datetime) -> None:
    """RetirePersona -> Persona.retire."""
    persona = await aggregates.personas.require(command.persona_id)
    persona.retire(reason=command.reason, at=at)


async def create_project(command: CreateProject, aggregates: Aggregates, at: datetime) -> None:
    """CreateProject -> Project.create."""
    await aggregates.projects.require_absent(command.project_id)
    project = Project.create(
        project_id=command.project_id, name=command.name, policy=command.policy, at=at
    )
    aggregates.projects.add(project)


async def change_approval_policy(
    command: ChangeApprovalPolicy, aggregates: Aggregates, at: datetime
) -> None:
    """ChangeApprovalPolicy -> Project.change_policy."""
    project = await aggregates.projects.require(command.project_id)
    project.change_policy(command.policy, at=at)


async def draft_plan(command: DraftPlan, aggregates: Aggregates, at: datetime) -> None:
    """DraftPlan -> Plan.draft, for an existing project and active personas."""
    await aggregates.plans.require_absent(command.plan_id)
    await aggregates.projects.require(command.project_id)
    await _require_active_personas(command.steps, aggregates)
    plan = Plan.draft(
        plan_id=command.plan_id,
        project_id=command.project_id,
        title=command.title,
        steps=command.steps,
        at=at,
    )
    aggregates.plans.add(plan)


async def edit_plan(command: EditPlan, aggregates: Aggregates, at: datetime) -> None:
    """EditPlan -> Plan.edit; new AI steps must name active personas."""
    plan = await aggregates.plans.require(command.plan_id)
    if command.steps is not None:
        await _require_active_personas(command.steps, aggregates)
    plan.edit(title=command.title, steps=command.steps, at=at)


async def submit_plan(command: SubmitPlan, aggregates: Aggregates, at: datetime) -> None:
    """SubmitPlan -> Plan.submit under the project's current policy (snapshot)."""
    plan = await aggregates.plans.require(command.plan_id)
    project = await aggregates.projects.require(plan.project_id)
    plan.submit(policy=project.policy, at=at)


async def approve_plan(command: ApprovePlan, aggregates: Aggregates, at: datetime) -> None:
    """ApprovePlan -> Plan.approve (one vote; quorum approves)."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.approve(approver=command.approver, comment=command.comment, at=at)


async def reject_plan(command: RejectPlan, aggregates: Aggregates, at: datetime) -> None:
    """RejectPlan -> Plan.reject."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.reject(approver=command.approver, reason=command.reason, at=at)


async def expire_plan(command: ExpirePlan, aggregates: Aggregates, at: datetime) -> None:
    """ExpirePlan -> Plan.expire (from its deadline on)."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.expire(at=at)


async def withdraw_plan(command: WithdrawPlan, aggregates: Aggregates, at: datetime) -> None:
    """WithdrawPlan -> Plan.withdraw."""
    plan = await aggregates.plans.require(command.plan_id)
    plan.withdraw(reason=command.reason, at=at)


async def send_notification(
    command: SendNotification, aggregates: Aggregates, at: datetime
) -> None:
    """SendNotification -> Notification.request; a repeated dedup key is dropped, not an error."""
    key = command.dedup_key
    notification_id = command.notification_id if key is None else notification_id_for(key)
    if key is not None and await aggregates.notifications.get(notification_id) is not None:
        return  # sent once already: a processed command with no events
    await aggregates.notifications.require_absent(notification_id)
    content = NotificationContent(
        **command.model_dump(exclude={"notification_id", "dedup_key"}), dedup_key=key
    )
    notification = Notification.request(notification_id=notification_id, content=content, at=at)
    aggregates.notifications.add(notification)


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
    DraftPlan: draft_plan,
    EditPlan: edit_plan,
    SubmitPlan: submit_plan,
    ApprovePlan: approve_plan,
    RejectPlan: reject_plan,
    ExpirePlan: expire_plan,
    WithdrawPlan: withdraw_plan,
    SendNotification: send_notification,
}
