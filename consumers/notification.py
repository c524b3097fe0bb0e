"""The notification consumer: applies the notification rules to the events people care about.

For an event with a rule (`consumers.notification_rules`), when the rule's condition holds,
it resolves the recipients (principal ids: from the event, or from state read through the
unit of work), leaves out the event's own actor (nobody is told about their own action) and
principals that are not people (`system:`, `persona:`), and for each recipient and each
channel their preferences keep sends, through the outbox as `system:notification`,

    SendNotification(notification_id=notification_id_for(key), dedup_key=key, ...)
    key = f"{source event id}:{recipient}:{channel}"

The processor records it as `NotificationRequested`, or `NotificationDropped` with the
reason when the people directory does not hold the recipient (so a person who is not, or
no longer, in the directory gets a `SendNotification` with the rule's default channels and
receives nothing). The commands commit with the inbox row: a redelivered or re-driven
event sends nothing again, and an event published twice (or a command sent twice) carries
the same key, which the processor finds stored — one notification per (recipient, source
event, channel), whatever happens upstream.

Unordered: notifications of different events are independent (each is keyed by its own
event), so nothing is gained by holding one event's notifications behind another's, and a
failing event must not stop everyone's notifications: it is retried through the delay
queues and parked while the others flow.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from consumers.notification_rules import RULES, RULES_BY_EVENT, Rule
from domain.notification import notification_id_for
from events import Actor, catalog
from events.notification import NotificationChannel, NotificationPriority, SendNotification
from events.plan import HumanStep
from events.workflow import WorkflowPhase
from infra.consumers import Consumer
from infra.message_context import MessageContext
from infra.people import LOOKUP_PREFETCH

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from uuid import UUID

    from domain.project import Project
    from events import DomainEvent, Envelope
    from infra.db.repositories import Aggregates
    from infra.db.uow import UnitOfWork
    from infra.people import Person, PersonDirectory

NAME = "notification"
ACTOR = Actor.system(NAME)
NOT_PEOPLE = frozenset({"system", "persona"})  # principal namespaces no person has
DEDUP_MAX = 200  # `events.notification.DedupKey`
SUBJECT_MAX = 200  # `events.fields.Label`
BODY_MAX = 100_000  # `events.fields.Text`
MISSING = "—"
PRIORITIES = tuple(NotificationPriority)  # lowest first


# Recipients: principal ids, from the event or from the state it points at.
async def approver(event: Any, _: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """ApprovalRequested: the approver asked."""
    return (event.approver,)


async def pending(event: Any, _: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """ApprovalReminderDue: the approvers who have not voted."""
    return tuple(event.pending)


async def submitted_by(event: Any, _: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """A plan decision: its submitter (none in an event upcast from v1)."""
    return () if event.submitted_by is None else (event.submitted_by,)


async def member(event: Any, _: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """A membership change: the member."""
    return (event.member,)


async def step_assignee(event: Any, _: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """TaskQueued: the assignee of a human step (an AI step has none)."""
    return (event.step.assignee,) if isinstance(event.step, HumanStep) else ()


async def task_assignee(event: Any, aggregates: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """A task event: the assignee of the task's human step, read from the task."""
    task = await aggregates.tasks.get(event.task_id)
    if task is None or not isinstance(task.step, HumanStep):
        return ()
    return (task.step.assignee,)


async def plan_submitter(event: Any, aggregates: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """A plan event: who submitted the plan, read from the plan."""
    plan = await aggregates.plans.get(event.plan_id)
    return () if plan is None or plan.submitted_by is None else (plan.submitted_by,)


async def plan_pending_approvers(event: Any, aggregates: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """A plan event: the approvers asked (policy and ad hoc) who have not voted."""
    plan = await aggregates.plans.get(event.plan_id)
    if plan is None or plan.policy is None:
        return ()  # never submitted: nobody was asked
    asked = (*plan.policy.approvers, *plan.ad_hoc_approvers)
    return tuple(principal for principal in asked if principal not in plan.approvals)


async def project_owner(event: Any, aggregates: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """The owner of the event's project (none for a project stored before owners)."""
    project = await _project(event, aggregates)
    return () if project is None or project.owner is None else (project.owner,)


async def project_members(event: Any, aggregates: Aggregates) -> tuple[str, ...]:  # noqa: ANN401
    """The owner and the members of the event's project."""
    project = await _project(event, aggregates)
    if project is None:
        return ()
    owner = () if project.owner is None else (project.owner,)
    return (*owner, *project.members)


async def _project(event: Any, aggregates: Aggregates) -> Project | None:  # noqa: ANN401
    """The event's project (an event upcast from v1 has none: found by its task or workflow)."""
    project_id: UUID | None = getattr(event, "project_id", None)
    if project_id is None and hasattr(event, "task_id"):
        task = await aggregates.tasks.get(event.task_id)
        project_id = None if task is None else task.project_id
    elif project_id is None and hasattr(event, "workflow_id"):
        workflow = await aggregates.workflows.get(event.workflow_id)
        project_id = None if workflow is None else workflow.project_id
    return None if project_id is None else await aggregates.projects.get(project_id)


RESOLVERS: dict[str, Callable[[Any, Aggregates], Awaitable[tuple[str, ...]]]] = {
    resolver.__name__: resolver
    for resolver in (
        approver,
        pending,
        submitted_by,
        member,
        step_assignee,
        task_assignee,
        plan_submitter,
        plan_pending_approvers,
        project_owner,
        project_members,
    )
}
CONDITIONS: dict[str, Callable[[Any], bool]] = {
    "human_step": lambda event: isinstance(event.step, HumanStep),
    "final_failure": lambda event: not event.retryable,
    "to_review": lambda event: event.to_phase is WorkflowPhase.REVIEW,
}


# Policies: pure functions.
def recipients_policy(found: Iterable[str], actor: Actor) -> tuple[str, ...]:
    """Each principal once, in order, without the actor and without principals no person has."""
    return tuple(
        dict.fromkeys(
            principal
            for principal in found
            if principal != actor.principal and principal.partition(":")[0] not in NOT_PEOPLE
        )
    )


def channels_policy(rule: Rule, person: Person | None) -> tuple[NotificationChannel, ...]:
    """The rule's channels the person keeps: none below their minimum priority.

    A principal the directory does not hold keeps the rule's channels: the processor drops
    each notification with the reason.
    """
    if person is None:
        return rule.channels
    preferences = person.preferences
    if PRIORITIES.index(rule.priority) < PRIORITIES.index(preferences.min_priority):
        return ()
    return tuple(channel for channel in rule.channels if channel in preferences.channels)


def dedup_key(event_id: UUID, recipient: str, channel: NotificationChannel) -> str:
    """`{event id}:{recipient}:{channel}`; a recipient too long for it is named by its SHA-256."""
    key = f"{event_id}:{recipient}:{channel}"
    if len(key) <= DEDUP_MAX:
        return key
    return f"{event_id}:sha256:{hashlib.sha256(recipient.encode()).hexdigest()}:{channel}"


def render(template: str, event: DomainEvent, limit: int) -> str:
    """`template` over the event's fields as text (null as "—"), cut to `limit` characters."""
    text = template.format_map(_texts(event.model_dump()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _texts(value: Any) -> Any:  # noqa: ANN401
    if isinstance(value, dict):
        return {key: _texts(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return ", ".join(str(_texts(item)) for item in value) or MISSING
    return MISSING if value is None else str(value)


# The handler.
async def handle_event(
    envelope: Envelope[DomainEvent], uow: UnitOfWork, *, people: PersonDirectory
) -> None:
    """The event's rule: one `SendNotification` per recipient and kept channel."""
    rule, event = RULES_BY_EVENT[envelope.type], envelope.data
    if rule.when is not None and not CONDITIONS[rule.when](event):
        return
    found = await RESOLVERS[rule.recipients](event, uow.aggregates)
    context = MessageContext.caused_by(envelope, actor=ACTOR)
    subject, body = render(rule.subject, event, SUBJECT_MAX), render(rule.body, event, BODY_MAX)
    for recipient in recipients_policy(found, envelope.actor):
        for channel in channels_policy(rule, await people.get(recipient)):
            key = dedup_key(envelope.id, recipient, channel)
            command = SendNotification(
                notification_id=notification_id_for(key),
                channel=channel,
                priority=rule.priority,
                recipient=recipient,
                subject=subject,
                body=body,
                dedup_key=key,
            )
            await uow.outbox.add_command(command, context=context)


CONSUMER = Consumer(
    name=NAME,
    handlers={catalog.entry(rule.event).model: handle_event for rule in RULES},
    prefetch=LOOKUP_PREFETCH,
)
