"""The check for text PostgreSQL cannot store: NUL and lone surrogates, at any depth."""

from __future__ import annotations

from uuid import uuid4

import pytest

from events import catalog
from producers.ingress.storable import NUL, SURROGATE, text_problem, unstorable


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain", None),
        ("ünïcödé ✓ 𝄞", None),  # non-ASCII, astral plane included: storable
        ("a\x00b", NUL),
        ("\x00", NUL),
        ("\ud800", SURROGATE),
        ("x\udfffy", SURROGATE),
    ],
)
def test_text_problem_names_nul_and_lone_surrogates_only(text: str, problem: str | None) -> None:
    assert text_problem(text) == problem


def test_every_unstorable_string_of_a_command_is_named_by_its_location() -> None:
    model = catalog.entry("DraftPlan").model
    step = {"step_id": str(uuid4()), "title": "t", "assignee": "key:a", "instructions": "b\x00d"}
    command = model.model_validate(
        {
            "plan_id": str(uuid4()),
            "project_id": str(uuid4()),
            "title": "p\x00",
            "steps": [{**step, "kind": "human"}],
        }
    )
    errors = unstorable(command)
    assert [error["loc"] for error in errors] == [
        ("body", "title"),
        ("body", "steps", 0, "instructions"),
    ]
    assert {error["type"] for error in errors} == {"string_unstorable"}
    assert all("NUL" in error["msg"] for error in errors)


def test_mapping_keys_and_values_are_checked_and_shown_printably() -> None:
    errors = unstorable({"ok": {"k\x00": "v", "\ud800": ["fine", "\x00"]}})
    assert [(error["loc"], error["msg"].split()[1]) for error in errors] == [
        (("body", "ok", "k\x00"), "key"),
        (("body", "ok", "\\ud800"), "key"),
        (("body", "ok", "\\ud800", 1), "text"),
    ]


def test_a_storable_command_has_no_errors() -> None:
    model = catalog.entry("CreateProject").model
    command = model.model_validate(
        {
            "project_id": str(uuid4()),
            "name": "Ünïcode ✓",
            "policy": {"approvers": ["key:a"], "required_approvals": 1},
        }
    )
    assert unstorable(command) == []
