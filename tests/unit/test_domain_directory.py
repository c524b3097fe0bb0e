"""Persona, project and notification rules (the aggregates without a long lifecycle)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest

from domain.errors import DomainError
from domain.notification import (
    Notification,
    NotificationContent,
    NotificationStatus,
    notification_id_for,
)
from domain.persona import Persona, PersonaProfile, PersonaStatus
from domain.project import Project
from events import Actor
from events.notification import (
    NotificationChannel,
    NotificationDelivered,
    NotificationFailed,
    NotificationPriority,
    NotificationRequested,
)
from events.persona import PersonaRegistered, PersonaRetired, PersonaUpdated
from events.project import ApprovalPolicy, ApprovalPolicyChanged, ProjectCreated
from tests.fakes import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable

PROFILE = PersonaProfile(
    name="Aiko",
    role="secretary",
    provider="fake",
    model="fake-1",
    system_prompt="Be brief.",
    permissions=("tasks:run",),
)
OWNER = Actor.of("key:ana")
POLICY = ApprovalPolicy(approvers=("key:ana", "key:bo"), required_approvals=1)
CONTENT = NotificationContent(
    channel=NotificationChannel.EMAIL,
    priority=NotificationPriority.HIGH,
    recipient="key:ana",  # a person of the directory, never a contact point
    subject="Plan submitted",
    body="Please review.",
    dedup_key="plan-1-submitted",
)


def events_of(aggregate: Persona | Project | Notification) -> list[object]:
    return [recorded.event for recorded in aggregate.pull_events()]


def code_of(action: Callable[[], object]) -> str:
    with pytest.raises(DomainError) as caught:
        action()
    return caught.value.code


def test_persona_update_records_whole_profile_and_what_changed() -> None:
    clock = FakeClock()
    persona = Persona.register(persona_id=uuid4(), profile=PROFILE, at=clock.now())
    persona.update(model="fake-2", name="Aiko", at=clock.now())
    registered, updated = events_of(persona)
    assert isinstance(registered, PersonaRegistered)
    assert updated == PersonaUpdated(
        persona_id=persona.id,
        changed=("model",),
        name="Aiko",
        role="secretary",
        provider="fake",
        model="fake-2",
        system_prompt="Be brief.",
        permissions=("tasks:run",),
    )


def test_persona_update_that_changes_nothing_is_refused() -> None:
    clock = FakeClock()
    persona = Persona.register(persona_id=uuid4(), profile=PROFILE, at=clock.now())
    assert code_of(lambda: persona.update(role="secretary", at=clock.now())) == "persona-unchanged"
    assert persona.version == 1


def test_retired_persona_cannot_change_or_retire_again() -> None:
    clock = FakeClock()
    persona = Persona.register(persona_id=uuid4(), profile=PROFILE, at=clock.now())
    persona.retire(reason="replaced", at=clock.now())
    assert isinstance(events_of(persona)[-1], PersonaRetired)
    assert code_of(lambda: persona.update(name="Bo", at=clock.now())) == "persona-retired"
    assert code_of(lambda: persona.retire(reason=None, at=clock.now())) == "persona-retired"
    stored = json.loads(json.dumps(persona.to_state()))
    rebuilt = Persona.from_state(stored, version=persona.version)
    assert (rebuilt.status, rebuilt.profile, rebuilt.version) == (PersonaStatus.RETIRED, PROFILE, 2)


def test_project_policy_change_is_recorded_and_must_change_something() -> None:
    clock = FakeClock()
    project = Project.create(
        project_id=uuid4(), name="Apollo", policy=POLICY, by=OWNER, at=clock.now()
    )
    stricter = POLICY.model_copy(update={"approval_deadline": timedelta(days=2)})
    project.change_policy(stricter, by=OWNER, at=clock.now())
    assert events_of(project) == [
        ProjectCreated(project_id=project.id, name="Apollo", owner="key:ana", policy=POLICY),
        ApprovalPolicyChanged(project_id=project.id, policy=stricter),
    ]
    assert (
        code_of(lambda: project.change_policy(stricter, by=OWNER, at=clock.now()))
        == "project-policy-unchanged"
    )
    rebuilt = Project.from_state(json.loads(json.dumps(project.to_state())), version=2)
    assert (rebuilt.policy, rebuilt.name, rebuilt.owner) == (stricter, "Apollo", "key:ana")


@pytest.mark.parametrize("outcome", ["delivered", "failed"])
def test_notification_records_one_final_outcome(outcome: str) -> None:
    clock = FakeClock()
    notification = Notification.request(
        notification_id=notification_id_for("plan-1-submitted"), content=CONTENT, at=clock.now()
    )
    if outcome == "delivered":
        notification.mark_delivered(attempts=2, at=clock.now())
    else:
        notification.mark_failed(error="mailbox full", attempts=3, at=clock.now())
    requested, final = events_of(notification)
    assert isinstance(requested, NotificationRequested)
    assert requested.dedup_key == "plan-1-submitted"
    assert isinstance(final, NotificationDelivered | NotificationFailed)
    assert notification.status is NotificationStatus(outcome)
    assert (
        code_of(lambda: notification.mark_delivered(attempts=1, at=clock.now()))
        == "notification-not-pending"
    )
    stored = json.loads(json.dumps(notification.to_state()))
    rebuilt = Notification.from_state(stored, version=notification.version)
    assert rebuilt.to_state() == notification.to_state()


def test_dedup_key_maps_to_one_notification_id() -> None:
    assert notification_id_for("k") == notification_id_for("k")
    assert notification_id_for("k") != notification_id_for("k2")
