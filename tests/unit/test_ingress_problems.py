"""Problem details: field errors name each field; cursors round-trip; OpenAPI media types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from producers.ingress.problems import ProblemError, field_errors, finish_openapi
from producers.ingress.state import decode_cursor, encode_cursor


def test_body_errors_get_json_pointers_and_other_errors_get_names() -> None:
    errors = field_errors(
        [
            {"loc": ("body", "policy", "approvers", 0), "msg": "bad"},
            {"loc": ("body", "a/b~c"), "msg": "escaped"},
            {"loc": ("header", "x-correlation-id"), "msg": "not a uuid"},
            {"loc": ("query", "limit"), "msg": "too big"},
        ]
    )
    assert [(e.pointer, e.field) for e in errors] == [
        ("/policy/approvers/0", "body.policy.approvers.0"),
        ("/a~1b~0c", "body.a/b~c"),
        ("", "header.X-Correlation-Id"),
        ("", "query.limit"),
    ]


def test_cursor_round_trips_and_garbage_is_a_422_naming_the_cursor() -> None:
    at, aggregate_id = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), uuid4()
    assert decode_cursor(encode_cursor(at, aggregate_id)) == (at, aggregate_id)
    with pytest.raises(ProblemError) as caught:
        decode_cursor("!!not-a-cursor")
    assert caught.value.problem.status == 422
    assert caught.value.problem.errors is not None
    assert caught.value.problem.errors[0].field == "query.cursor"


def test_error_responses_are_declared_as_problem_json_with_retry_after() -> None:
    schema: dict[str, Any] = {
        "paths": {
            "/x": {
                "get": {
                    "responses": {
                        "200": {"content": {"application/json": {}}},
                        "503": {"content": {"application/json": {}}},
                    }
                }
            }
        }
    }
    responses = finish_openapi(schema)["paths"]["/x"]["get"]["responses"]
    assert list(responses["200"]["content"]) == ["application/json"]
    assert list(responses["503"]["content"]) == ["application/problem+json"]
    assert "Retry-After" in responses["503"]["headers"]
