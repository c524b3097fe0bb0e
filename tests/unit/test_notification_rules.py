"""The notification rules: every rule on a sample event of its type, and the policies applied.

Recipients come from the event or from the state read through the unit of work
(`tests/notification_support.py` seeds a project, plan, task and workflow); preferences
switch channels off and raise the minimum priority; nobody is told about their own action.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from consumers import notification
from consumers.notification_rules import RULES, RULES_BY_EVENT, Rule
from events import Actor, catalog
from events.notification import NotificationChannel, NotificationPriority
from hisho.cli import app
from infra.people import NotificationPreferences
from tests.fakes import FakeDatabase, FakeUnitOfWork
from tests.notification_support import (
    AI,
    ANA,
    BO,
    MIA,
    OWEN,
    RECIPIENTS,
    SAM,
    sample,
    seed,
)
from tests.people_fakes import person

if TYPE_CHECKING:
    from events import DomainEvent

IN_APP, EMAIL, CHAT = (
    NotificationChannel.IN_APP,
    NotificationChannel.EMAIL,
    NotificationChannel.CHAT_WEBHOOK,
)
RULE_EVENTS = [rule.event for rule in RULES]


async def resolved(event: DomainEvent) -> tuple[str, ...]:
    """The recipients the event's rule resolves in the seeded world."""
    db = FakeDatabase()
    seed(db)
    async with FakeUnitOfWork(db=db) as uow:
        rule = RULES_BY_EVENT[type(event).__name__]
        return await notification.RESOLVERS[rule.recipients](event, uow.aggregates)


@pytest.mark.parametrize("rule", RULES, ids=RULE_EVENTS)
def test_every_rule_names_an_event_of_the_catalog_and_a_known_resolver(rule: Rule) -> None:
    entry = catalog.entry(rule.event)
    assert entry.kind == "event"
    assert rule.recipients in notification.RESOLVERS
    assert rule.when is None or rule.when in notification.CONDITIONS
    assert rule.channels[0] is IN_APP, "every rule notifies in-app first"
    assert len(set(rule.channels)) == len(rule.channels)
    assert rule.why


def test_one_rule_per_event_type_and_none_on_notifications_themselves() -> None:
    assert len(RULE_EVENTS) == len(set(RULE_EVENTS))
    aggregates = {catalog.entry(event).aggregate for event in RULE_EVENTS}
    assert "notification" not in aggregates, "a notification about a notification loops"
    assert set(RECIPIENTS) == set(RULE_EVENTS), "the samples cover every rule"


def test_the_consumer_handles_and_binds_exactly_the_rules_events() -> None:
    handled = {model.__name__ for model in notification.CONSUMER.handlers}
    assert handled == set(RULE_EVENTS)
    keys = {catalog.entry(event).routing_key for event in RULE_EVENTS}
    assert set(notification.CONSUMER.routing_keys) == keys
    assert notification.CONSUMER.ordered is None


@pytest.mark.parametrize("rule", RULES, ids=RULE_EVENTS)
async def test_each_resolver_finds_its_recipients_on_a_sample_event(rule: Rule) -> None:
    event = sample(rule.event)
    assert rule.when is None or notification.CONDITIONS[rule.when](event)
    assert await resolved(event) == RECIPIENTS[rule.event]


@pytest.mark.parametrize("rule", RULES, ids=RULE_EVENTS)
def test_each_rule_renders_its_subject_and_body_from_the_events_fields(rule: Rule) -> None:
    event = sample(rule.event)
    subject = notification.render(rule.subject, event, notification.SUBJECT_MAX)
    body = notification.render(rule.body, event, notification.BODY_MAX)
    assert subject
    assert "{" not in subject
    assert "{" not in body


def test_a_template_shows_the_plan_title_and_a_missing_value_as_a_dash() -> None:
    rule = RULES_BY_EVENT["TaskQueued"]
    body = notification.render(rule.body, sample("TaskQueued"), notification.BODY_MAX)
    assert body == "Do\n\nFeedback: —"
    approval = RULES_BY_EVENT["ApprovalRequested"]
    subject = notification.render(approval.subject, sample("ApprovalRequested"), 200)
    assert subject == "Approval requested: Budget"


def test_a_subject_too_long_is_cut_to_the_label_limit() -> None:
    event = sample("PlanApproved", title="x" * 200)
    subject = notification.render("Plan approved: {title}", event, notification.SUBJECT_MAX)
    assert len(subject) == notification.SUBJECT_MAX
    assert subject.endswith("…")


async def test_a_resolver_reading_state_finds_nobody_when_the_state_is_missing() -> None:
    event = sample("WorkflowFailed", project_id=uuid.uuid4())
    assert await resolved(event) == ()
    assert await resolved(sample("PlanWorkflowStarted", plan_id=uuid.uuid4())) == ()


async def test_an_event_upcast_without_its_project_finds_it_by_its_task() -> None:
    assert await resolved(sample("TaskFailed", project_id=None)) == (OWEN,)
    assert await resolved(sample("WorkflowPhaseChanged", project_id=None)) == (OWEN, MIA)


async def test_a_task_event_of_an_ai_step_has_no_assignee() -> None:
    assert await resolved(sample("TaskQueued", step=AI)) == ()


def test_conditions_skip_an_ai_task_a_retryable_failure_and_a_move_to_execution() -> None:
    conditions = notification.CONDITIONS
    assert not conditions["human_step"](sample("TaskQueued", step=AI))
    assert not conditions["final_failure"](sample("TaskFailed", retryable=True))
    to_execution = sample("WorkflowPhaseChanged", to_phase="execution")
    assert not conditions["to_review"](to_execution)


def test_the_actor_is_not_told_about_their_own_action() -> None:
    kept = notification.recipients_policy((OWEN, MIA), Actor.of(MIA))
    assert kept == (OWEN,)
    assert notification.recipients_policy((SAM,), Actor.of(SAM)) == ()


def test_principals_no_person_has_are_never_notified_and_each_person_once() -> None:
    found = ("system:scheduler", "persona:writer", ANA, BO, ANA)
    assert notification.recipients_policy(found, Actor.system("tests")) == (ANA, BO)


def test_preferences_switch_a_channel_off() -> None:
    rule = RULES_BY_EVENT["ApprovalRequested"]
    prefs = NotificationPreferences(channels=(IN_APP, CHAT))
    assert notification.channels_policy(rule, person(ANA, preferences=prefs)) == (IN_APP, CHAT)


def test_a_raised_minimum_priority_silences_what_is_below_it_on_every_channel() -> None:
    normal, high = RULES_BY_EVENT["PlanApproved"], RULES_BY_EVENT["WorkflowFailed"]
    picky = person(SAM, preferences=NotificationPreferences(min_priority=NotificationPriority.HIGH))
    assert notification.channels_policy(normal, picky) == ()
    assert notification.channels_policy(high, picky) == (IN_APP, EMAIL, CHAT)


def test_a_principal_the_directory_does_not_hold_keeps_the_rules_channels() -> None:
    rule = RULES_BY_EVENT["PlanApproved"]
    assert notification.channels_policy(rule, None) == (IN_APP, EMAIL)


def test_the_dedup_key_names_event_recipient_and_channel() -> None:
    event_id = uuid.uuid4()
    assert notification.dedup_key(event_id, ANA, EMAIL) == f"{event_id}:{ANA}:email"


def test_a_recipient_too_long_for_the_key_is_named_by_its_hash_still_one_key() -> None:
    event_id, long = uuid.uuid4(), "user:https://issuer.example/" + "s" * 300
    key = notification.dedup_key(event_id, long, IN_APP)
    assert len(key) <= notification.DEDUP_MAX
    assert key == notification.dedup_key(event_id, long, IN_APP)
    assert key != notification.dedup_key(event_id, long + "t", IN_APP)
    assert key.startswith(f"{event_id}:sha256:")


def test_hisho_notifications_rules_prints_every_rule() -> None:
    result = CliRunner().invoke(app, ["notifications", "rules"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["EVENT", "RECIPIENTS", "WHEN", "CHANNELS", "PRIORITY"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(rows) == set(RULE_EVENTS)
    assert rows["WorkflowFailed"] == [
        "project_owner",
        "always",
        "in_app,email,chat_webhook",
        NotificationPriority.HIGH.value,
    ]
