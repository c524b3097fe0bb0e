"""`hisho events tail` without a broker: the pattern rules and the lines it prints."""

from __future__ import annotations

import json

import pytest

from hisho.cli.events import (
    DATA_WIDTH,
    BadPatternError,
    check_pattern,
    event_line,
    json_line,
    topic_matches,
)

AGGREGATE = "0b5e7a6c-2f51-4c8e-9a3e-1f2d3c4b5a69"
EVENT = "a1b2c3d4-e5f6-4789-abcd-ef0123456789"


def envelope(**changes: object) -> bytes:
    """A relay-published envelope (the AMQP body), with fields changed."""
    body: dict[str, object] = {
        "actor": {"id": "k1", "kind": "api_key"},
        "aggregate_id": AGGREGATE,
        "aggregate_type": "plan",
        "aggregate_version": 2,
        "causation_id": None,
        "correlation_id": EVENT,
        "data": {"plan_id": AGGREGATE, "step_count": 3},
        "id": EVENT,
        "occurred_at": "2025-01-31T09:15:00.000001Z",
        "position": 42,
        "traceparent": None,
        "type": "PlanSubmitted",
        "version": 1,
        **changes,
    }
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("#", "plan.submitted", True),
        ("plan.*", "plan.submitted", True),
        ("plan.*", "plan.step.added", False),
        ("plan.#", "plan.step.added", True),
        ("plan.#", "plan", True),
        ("*.submitted", "plan.submitted", True),
        ("*", "plan.submitted", False),
        ("#.added", "plan.step.added", True),
        ("plan.#.added", "plan.added", True),
        ("plan.#.added", "plan.step.x.added", True),
        ("plan.#.added", "plan.step.removed", False),
        ("plan.submitted", "plan.submitted", True),
        ("plan.submitted", "plan.submitted.x", False),
        ("project.*", "plan.submitted", False),
    ],
)
def test_topic_patterns_match_routing_keys_as_rabbitmq_does(
    pattern: str, key: str, *, matches: bool
) -> None:
    assert topic_matches(pattern.split("."), key.split(".")) is matches


@pytest.mark.parametrize("pattern", ["#", "plan.*", "project.created", "*.created", "#.created"])
def test_a_pattern_that_matches_an_event_type_is_accepted(pattern: str) -> None:
    assert check_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("", "bad pattern"),
        ("plan..x", "bad pattern"),
        ("plan.", "bad pattern"),
        ("plan.*x", "bad pattern"),
        ("plan submitted", "bad pattern"),
        ("p" * 256, "bad pattern"),
        ("plans.*", "matches no event type"),
        ("plan", "matches no event type"),
    ],
)
def test_a_bad_pattern_is_refused_with_the_rule(pattern: str, says: str) -> None:
    with pytest.raises(BadPatternError, match=says) as refused:
        check_pattern(pattern)
    assert refused.value.exit_code == 2


def test_an_event_line_shows_position_type_aggregate_id_and_data_without_the_aggregate_id() -> None:
    line = event_line(envelope(), "plan.submitted")
    assert line == f'    42  PlanSubmitted  plan {AGGREGATE} v2  id {EVENT}  {{"step_count":3}}'


def test_long_data_is_cut_to_its_width_and_keeps_non_ascii() -> None:
    line = event_line(envelope(data={"note": "秘書" * 200}), "plan.submitted")
    data = line.split(f"id {EVENT}  ", 1)[1]
    assert len(data) == DATA_WIDTH
    assert data.startswith('{"note":"秘書')
    assert data.endswith("…")


def test_an_event_without_an_aggregate_shows_a_dash() -> None:
    body = envelope(aggregate_id=None, aggregate_type=None, aggregate_version=None)
    assert f"PlanSubmitted  -  id {EVENT}  " in event_line(body, "plan.submitted")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", json.dumps({"type": "X"}).encode()])
def test_a_body_that_is_not_an_envelope_is_shown_not_dropped(body: bytes) -> None:
    assert event_line(body, "plan.submitted") == (
        f"     ?  plan.submitted  (not an envelope: {len(body)} bytes)"
    )


def test_json_lines_are_the_envelope_on_one_line() -> None:
    line = json_line(envelope(data={"note": "café\nnext"}), "plan.submitted")
    assert "\n" not in line
    assert json.loads(line) == json.loads(envelope(data={"note": "café\nnext"}))


def test_a_body_that_is_not_json_is_wrapped_in_a_json_line() -> None:
    assert json.loads(json_line(b"\xffraw", "plan.submitted")) == {
        "routing_key": "plan.submitted",
        "undecodable_body": "\ufffdraw",
    }
