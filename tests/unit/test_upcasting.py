"""Every v1 payload the previous contracts wrote reads as a valid v2 message.

Version 2 namespaced the principals (a bare v1 name reads as `legacy:<name>`) and added
fields (project, title, submitter, vote caster, owner) that an upcast v1 payload has as null.
Each sample below is a v1 payload as the v1 models dumped it (`model_dump(mode="json")`),
next to the v2 payload it must read as; a type moved to v2 without a sample here, or without
an upcaster step, fails.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from events import InvalidMessageError, UnknownSchemaVersionError, catalog
from events.notification import NotificationDelivered
from events.plan import ApprovePlan
from events.upcasters import legacy_principal, qualify_principals

Payload = dict[str, Any]

PLAN = "6f1e0a52-5b0c-4c57-9d5e-0a4b8f6c1d01"
PROJECT = "6f1e0a52-5b0c-4c57-9d5e-0a4b8f6c1d02"
WORKFLOW = "6f1e0a52-5b0c-4c57-9d5e-0a4b8f6c1d03"
TASK = "6f1e0a52-5b0c-4c57-9d5e-0a4b8f6c1d04"
PERSONA = "6f1e0a52-5b0c-4c57-9d5e-0a4b8f6c1d05"
NOTIFICATION = "6f1e0a52-5b0c-4c57-9d5e-0a4b8f6c1d06"
STEP_1 = "00000000-0000-0000-0000-000000000001"
STEP_2 = "00000000-0000-0000-0000-000000000002"
DEADLINE = "2026-01-02T05:04:05Z"


def _policy(*approvers: str) -> Payload:
    return {
        "approvers": list(approvers),
        "required_approvals": 2,
        "auto_approve_max_steps": 0,
        "approval_deadline": "PT2H",
    }


def _human(assignee: str) -> Payload:
    return {
        "kind": "human",
        "step_id": STEP_1,
        "title": "Sign",
        "assignee": assignee,
        "instructions": "sign it",
    }


AI_STEP = {"kind": "ai", "step_id": STEP_2, "title": "Draft", "persona_id": PERSONA, "input": "go"}
V1_POLICY, V2_POLICY = _policy("ana", "bo@corp"), _policy("legacy:ana", "legacy:bo@corp")
V1_STEPS, V2_STEPS = [_human("ana"), AI_STEP], [_human("legacy:ana"), AI_STEP]
IN_TASK = {"task_id": TASK, "workflow_id": WORKFLOW}  # what every v1 task event began with
IN_TASK_V2 = {**IN_TASK, "project_id": None}
APPROVED_BY_V1 = {"plan_id": PLAN, "comment": "fine"}
IN_PLAN = {"plan_id": PLAN, "project_id": PROJECT}
MAIL = {"notification_id": NOTIFICATION, "channel": "email"}

# type -> (v1 payload as v1 wrote it, the v2 payload it reads as)
SAMPLES: dict[str, tuple[Payload, Payload]] = {
    "CreateProject": (
        {"project_id": PROJECT, "name": "Apollo", "policy": V1_POLICY},
        {"project_id": PROJECT, "name": "Apollo", "policy": V2_POLICY},
    ),
    "ChangeApprovalPolicy": (
        {"project_id": PROJECT, "policy": V1_POLICY},
        {"project_id": PROJECT, "policy": V2_POLICY},
    ),
    "ProjectCreated": (
        {"project_id": PROJECT, "name": "Apollo", "policy": V1_POLICY},
        {"project_id": PROJECT, "name": "Apollo", "owner": None, "policy": V2_POLICY},
    ),
    "ApprovalPolicyChanged": (
        {"project_id": PROJECT, "policy": V1_POLICY},
        {"project_id": PROJECT, "policy": V2_POLICY},
    ),
    "DraftPlan": (
        {**IN_PLAN, "title": "Launch", "steps": V1_STEPS},
        {**IN_PLAN, "title": "Launch", "steps": V2_STEPS},
    ),
    "EditPlan": (
        {"plan_id": PLAN, "title": None, "steps": V1_STEPS},
        {"plan_id": PLAN, "title": None, "steps": V2_STEPS},
    ),
    "ApprovePlan": (
        {**APPROVED_BY_V1, "approver": "ana"},
        {**APPROVED_BY_V1, "on_behalf_of": "legacy:ana"},
    ),
    "RejectPlan": (
        {"plan_id": PLAN, "approver": "bo@corp", "reason": "too risky"},
        {"plan_id": PLAN, "on_behalf_of": "legacy:bo@corp", "reason": "too risky"},
    ),
    "PlanDrafted": (
        {**IN_PLAN, "title": "Launch", "steps": V1_STEPS},
        {**IN_PLAN, "title": "Launch", "steps": V2_STEPS},
    ),
    "PlanEdited": (
        {"plan_id": PLAN, "title": "Launch", "steps": V1_STEPS},
        {**IN_PLAN, "project_id": None, "title": "Launch", "steps": V2_STEPS},
    ),
    "PlanSubmitted": (
        {**IN_PLAN, "step_count": 2, "policy": V1_POLICY, "deadline": DEADLINE},
        {
            **IN_PLAN,
            "title": None,
            "submitted_by": None,
            "step_count": 2,
            "policy": V2_POLICY,
            "deadline": DEADLINE,
        },
    ),
    "PlanApprovalRecorded": (
        {
            "plan_id": PLAN,
            "approver": "ana",
            "comment": None,
            "approvals": 1,
            "required_approvals": 2,
        },
        {
            "plan_id": PLAN,
            "project_id": None,
            "title": None,
            "approver": "legacy:ana",
            "cast_by": None,
            "comment": None,
            "approvals": 1,
            "required_approvals": 2,
        },
    ),
    "PlanApproved": (
        {**IN_PLAN, "approvers": ["ana", "bo@corp"], "auto": False},
        {
            **IN_PLAN,
            "title": None,
            "submitted_by": None,
            "approvers": ["legacy:ana", "legacy:bo@corp"],
            "auto": False,
        },
    ),
    "PlanRejected": (
        {**IN_PLAN, "approver": "bo@corp", "reason": "too risky"},
        {
            **IN_PLAN,
            "title": None,
            "submitted_by": None,
            "approver": "legacy:bo@corp",
            "cast_by": None,
            "reason": "too risky",
        },
    ),
    "PlanExpired": (
        {**IN_PLAN, "deadline": DEADLINE},
        {**IN_PLAN, "title": None, "submitted_by": None, "deadline": DEADLINE},
    ),
    "PlanWithdrawn": (
        {**IN_PLAN, "reason": None},
        {**IN_PLAN, "title": None, "reason": None},
    ),
    "StartTask": (
        {"task_id": TASK, "worker": "ai_execution"},
        {"task_id": TASK, "worker": "legacy:ai_execution"},
    ),
    "TaskCreated": (
        {**IN_TASK, "project_id": PROJECT, "step": _human("ana"), "max_attempts": 3},
        {**IN_TASK, "project_id": PROJECT, "step": _human("legacy:ana"), "max_attempts": 3},
    ),
    "TaskQueued": (
        {**IN_TASK, "step": _human("ana"), "attempt": 1, "feedback": "shorter"},
        {**IN_TASK_V2, "step": _human("legacy:ana"), "attempt": 1, "feedback": "shorter"},
    ),
    "TaskStarted": (
        {**IN_TASK, "attempt": 1, "worker": "ana"},
        {**IN_TASK_V2, "attempt": 1, "worker": "legacy:ana"},
    ),
    "TaskCompleted": (
        {**IN_TASK, "attempt": 1, "output": "signed"},
        {**IN_TASK_V2, "attempt": 1, "output": "signed"},
    ),
    "TaskFailed": (
        {**IN_TASK, "attempt": 2, "error": "timeout", "retryable": True},
        {**IN_TASK_V2, "attempt": 2, "error": "timeout", "retryable": True},
    ),
    "TaskRetried": ({**IN_TASK, "attempt": 2}, {**IN_TASK_V2, "attempt": 2}),
    "TaskCancelled": ({**IN_TASK, "reason": None}, {**IN_TASK_V2, "reason": None}),
    "TaskReopened": (
        {**IN_TASK, "revision": 1, "feedback": "again"},
        {**IN_TASK_V2, "revision": 1, "feedback": "again"},
    ),
    "WorkflowPhaseChanged": (
        {"workflow_id": WORKFLOW, "from_phase": "planning", "to_phase": "execution"},
        {
            "workflow_id": WORKFLOW,
            "project_id": None,
            "from_phase": "planning",
            "to_phase": "execution",
        },
    ),
    "WorkflowRevisionRequested": (
        {"workflow_id": WORKFLOW, "task_ids": [TASK], "reason": "redo", "revision": 1},
        {
            "workflow_id": WORKFLOW,
            "project_id": None,
            "task_ids": [TASK],
            "reason": "redo",
            "revision": 1,
        },
    ),
    "SendNotification": (
        {
            **MAIL,
            "priority": "high",
            "recipient": "ana@example.test",  # v1 named a contact point
            "subject": "Plan submitted",
            "body": "Please review.",
            "dedup_key": "plan-1-submitted",
        },
        {
            **MAIL,
            "priority": "high",
            "recipient": "legacy:ana@example.test",
            "subject": "Plan submitted",
            "body": "Please review.",
            "dedup_key": "plan-1-submitted",
        },
    ),
    "NotificationRequested": (
        {
            **MAIL,
            "priority": "normal",
            "recipient": "ana@example.test",
            "subject": "Plan submitted",
            "body": "Please review.",
            "dedup_key": None,
        },
        {
            **MAIL,
            "priority": "normal",
            "recipient": "legacy:ana@example.test",
            "subject": "Plan submitted",
            "body": "Please review.",
            "dedup_key": None,
        },
    ),
    "NotificationDelivered": (
        {**MAIL, "recipient": "ana@example.test", "attempts": 1},
        {**MAIL, "recipient": "legacy:ana@example.test", "attempts": 1},
    ),
    "NotificationFailed": (
        {**MAIL, "recipient": "ana@example.test", "attempts": 3, "error": "mailbox full"},
        {**MAIL, "recipient": "legacy:ana@example.test", "attempts": 3, "error": "mailbox full"},
    ),
}
RENAMED = {"ApprovePlan": {"approver": "on_behalf_of"}, "RejectPlan": {"approver": "on_behalf_of"}}
"""v1 fields v2 renamed (a v1 vote named its voter: it reads as cast on their behalf)."""

ENTRIES = catalog.entries()
UPGRADED = sorted(entry.type for entry in ENTRIES if entry.version > 1)


@pytest.mark.parametrize("message_type", UPGRADED)
def test_every_type_past_version_one_has_an_upcaster_from_each_older_version(
    message_type: str,
) -> None:
    entry = catalog.entry(message_type)
    missing = [v for v in range(1, entry.version) if not catalog.upcasters.has(message_type, v)]
    assert missing == [], f"{message_type} has no upcaster from version(s) {missing}"


def test_every_type_past_version_one_has_a_v1_sample() -> None:
    assert sorted(SAMPLES) == UPGRADED
    assert {catalog.entry(t).version for t in SAMPLES} == {2}  # a v3 needs v2 samples too


@pytest.mark.parametrize("message_type", sorted(SAMPLES))
def test_a_v1_payload_reads_as_its_v2_message(message_type: str) -> None:
    v1, v2 = SAMPLES[message_type]
    message = catalog.parse_data(message_type, 1, v1)
    model = catalog.entry(message_type).model
    assert type(message) is model
    # v2 as written here, with what later v2 fields default to (step time limits, settings)
    assert message.model_dump(mode="json") == model.model_validate(v2).model_dump(mode="json")
    assert catalog.parse_data(message_type, 2, v2) == message  # v2 is the current form


@pytest.mark.parametrize("message_type", sorted(SAMPLES))
def test_fields_v2_added_are_null_in_an_upcast_v1_payload(message_type: str) -> None:
    v1, _ = SAMPLES[message_type]
    renamed = RENAMED.get(message_type, {})
    dumped = catalog.parse_data(message_type, 1, v1).model_dump(mode="json")
    fields = catalog.entry(message_type).model.model_fields
    defaulted = {
        name for name, f in fields.items() if not f.is_required() and f.default is not None
    }
    added = set(dumped) - set(v1) - set(renamed.values()) - defaulted
    assert {field: dumped[field] for field in added} == dict.fromkeys(added)
    assert set(v1) - set(dumped) == set(renamed)  # nothing v1 carried is lost


@pytest.mark.parametrize("message_type", sorted(SAMPLES))
def test_an_upcast_v1_payload_names_only_legacy_principals(message_type: str) -> None:
    v1, v2 = SAMPLES[message_type]
    for old, new in _changed_strings(v1, v2):  # only principals change, and only this way
        assert new == legacy_principal(old) == f"legacy:{old}"


def test_a_v1_envelope_is_decoded_at_the_current_version() -> None:
    v1, v2 = SAMPLES["PlanApproved"]
    envelope = catalog.decode(
        {
            "id": "6f1e0a52-5b0c-4c57-9d5e-0a4b8f6c1d10",
            "type": "PlanApproved",
            "version": 1,
            "occurred_at": "2026-01-02T03:04:05Z",
            "correlation_id": "6f1e0a52-5b0c-4c57-9d5e-0a4b8f6c1d11",
            "actor": {"kind": "system", "id": "command_processor"},
            "data": v1,
        }
    )
    assert envelope.version == 2
    current = catalog.entry("PlanApproved").model.model_validate(v2)  # with later defaults
    assert envelope.data.model_dump(mode="json") == current.model_dump(mode="json")


def test_a_v1_vote_reads_as_cast_on_behalf_of_its_voter() -> None:
    for message_type in ("ApprovePlan", "RejectPlan"):
        v1, _ = SAMPLES[message_type]
        vote = catalog.parse_data(message_type, 1, v1)
        assert vote.on_behalf_of == legacy_principal(v1["approver"])  # type: ignore[attr-defined]
    without_voter = catalog.parse_data("ApprovePlan", 1, {"plan_id": PLAN})
    assert without_voter.on_behalf_of is None  # type: ignore[attr-defined]


def test_a_v1_payload_is_not_read_as_v2() -> None:
    v1, _ = SAMPLES["PlanApproved"]
    with pytest.raises(InvalidMessageError) as caught:  # v2 requires the fields, even if null
        catalog.parse_data("PlanApproved", 2, v1)
    assert (caught.value.message_type, caught.value.field) == ("PlanApproved", "title")


def test_a_version_newer_than_the_catalog_is_unknown() -> None:
    _, v2 = SAMPLES["PlanApproved"]
    with pytest.raises(UnknownSchemaVersionError):
        catalog.parse_data("PlanApproved", 3, v2)


def test_a_principal_already_namespaced_is_left_as_it_is() -> None:
    payload = {
        "approver": "key:ana",
        "approvers": ["legacy:bo", "user:https://id.test/cy", "di"],
        "approvals": 2,  # a count, though its key holds principals elsewhere
        "steps": [{"assignee": "persona:aiko"}, {"assignee": "ed"}],
        "title": "ana",  # not a principal-holding key
    }
    assert qualify_principals(payload) == {
        "approver": "key:ana",
        "approvers": ["legacy:bo", "user:https://id.test/cy", "legacy:di"],
        "approvals": 2,
        "steps": [{"assignee": "persona:aiko"}, {"assignee": "legacy:ed"}],
        "title": "ana",
    }


def _changed_strings(old: Any, new: Any) -> list[tuple[str, str]]:
    """The (old, new) pairs of strings that differ at the same place in two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            pair for key in old.keys() & new.keys() for pair in _changed_strings(old[key], new[key])
        ]
    if isinstance(old, list) and isinstance(new, list):
        return [pair for o, n in zip(old, new, strict=True) for pair in _changed_strings(o, n)]
    if isinstance(old, str) and isinstance(new, str) and old != new:
        return [(old, new)]
    return []


def test_a_long_v1_recipient_and_a_control_character_still_upcast() -> None:
    webhook = "https://chat.example.test/hooks/" + "x" * 1_900
    delivered = catalog.parse_data(
        "NotificationDelivered",
        1,
        {
            "notification_id": str(UUID(int=9)),
            "channel": "chat_webhook",
            "recipient": webhook,
            "attempts": 1,
        },
    )
    assert isinstance(delivered, NotificationDelivered)
    assert delivered.recipient == f"legacy:{webhook}"
    vote = catalog.parse_data(
        "ApprovePlan", 1, {"plan_id": str(UUID(int=8)), "approver": "ana\tb", "comment": None}
    )
    assert isinstance(vote, ApprovePlan)
    assert vote.on_behalf_of == "legacy:ana\\x09b"
