"""The whole ingress app with fakes: status codes, problem bodies, nothing published on error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from producers.ingress.ports import PublishOutcomeUnknownError
from tests.ingress_fakes import ADMIN, READER, WRITER, FakedIngress
from tests.ingress_support import ingress_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from producers.ingress.ports import OutgoingCommand

PROBLEM = "application/problem+json"
INVALID = 'Bearer realm="hisho", error="invalid_token"'


@pytest.fixture
async def ingress() -> FakedIngress:
    return FakedIngress()


@pytest.fixture
async def client(ingress: FakedIngress) -> AsyncIterator[httpx.AsyncClient]:
    async with ingress_client(ingress.app) as http:
        yield http


def _auth(token: str = WRITER) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://hisho.dev/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    return body


async def test_a_valid_command_is_accepted_with_location(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=_auth()
    )
    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == body["status_url"]
    assert body["status_url"] == f"/v1/commands/{body['command_id']}"
    assert [m.message_id for m in ingress.publisher.published] == [body["command_id"]]


async def test_admin_scope_may_post_commands(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=_auth(ADMIN)
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="hisho"'),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 'Bearer realm="hisho"'),
        (
            _auth("hisho_00000000000000ff_" + "x" * 43),
            'Bearer realm="hisho", error="invalid_token"',
        ),
        (_auth("not-a-key"), 'Bearer realm="hisho", error="invalid_token"'),
    ],
)
async def test_missing_or_bad_credentials_are_401_with_a_challenge(
    client: httpx.AsyncClient, ingress: FakedIngress, headers: dict[str, str], challenge: str
) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=headers
    )
    _assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == challenge
    assert ingress.publisher.published == []


async def test_a_key_without_the_scope_is_403(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=_auth(READER)
    )
    body = _assert_problem(response, 403, "forbidden")
    assert "commands:write" in body["detail"]
    assert ingress.publisher.published == []


async def test_an_unknown_command_type_is_404(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    response = await client.post("/v1/commands/LaunchRocket", json={}, headers=_auth())
    body = _assert_problem(response, 404, "unknown-command-type")
    assert "LaunchRocket" in body["detail"]
    assert ingress.publisher.published == []


async def test_invalid_fields_are_422_naming_each_field(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    response = await client.post(
        "/v1/commands/CreateProject",
        json={"project_id": "nope", "name": "", "policy": {"approvers": []}, "extra": 1},
        headers=_auth(),
    )
    body = _assert_problem(response, 422, "validation")
    fields = {error["field"] for error in body["errors"]}
    assert {"body.project_id", "body.name", "body.extra"} <= fields
    assert any(f.startswith("body.policy.") for f in fields)
    pointers = {error["pointer"] for error in body["errors"]}
    assert {"/project_id", "/name", "/extra"} <= pointers
    assert all(error["message"] for error in body["errors"])
    assert ingress.publisher.published == []


async def test_malformed_json_is_422(client: httpx.AsyncClient, ingress: FakedIngress) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan",
        content=b'{"plan_id": ',
        headers={**_auth(), "Content-Type": "application/json"},
    )
    _assert_problem(response, 422, "validation")
    assert ingress.publisher.published == []


async def test_a_body_that_is_not_utf8_is_422_not_400(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan",
        content=b"\xff\xfe{",
        headers={**_auth(), "Content-Type": "application/json"},
    )
    body = _assert_problem(response, 422, "validation")
    assert [error["field"] for error in body["errors"]] == ["body"]
    assert ingress.publisher.published == []


async def test_an_invalid_correlation_id_header_is_422(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan",
        json={"plan_id": str(uuid4())},
        headers={**_auth(), "X-Correlation-Id": "not-a-uuid"},
    )
    body = _assert_problem(response, 422, "validation")
    assert [error["field"] for error in body["errors"]] == ["header.X-Correlation-Id"]
    assert ingress.publisher.published == []


async def test_a_body_that_is_not_json_is_415(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan",
        content=f'{{"plan_id": "{uuid4()}"}}',
        headers={**_auth(), "Content-Type": "text/plain"},
    )
    _assert_problem(response, 415, "unsupported-media-type")
    assert ingress.publisher.published == []


async def test_a_declared_length_over_the_limit_is_413(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan",
        content=b"{" + b" " * 5000 + b"}",
        headers={**_auth(), "Content-Type": "application/json"},
    )
    body = _assert_problem(response, 413, "payload-too-large")
    assert "4096" in body["detail"]
    assert ingress.publisher.published == []


async def test_a_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"plan_id": "'
        for _ in range(10):
            yield b" " * 1000

    response = await client.post(
        "/v1/commands/SubmitPlan",
        content=chunks(),
        headers={**_auth(), "Content-Type": "application/json"},
    )
    body = _assert_problem(response, 413, "payload-too-large")
    assert "streamed" in body["detail"]
    assert ingress.publisher.published == []


async def test_an_idempotency_conflict_is_409(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    headers = {**_auth(), "Idempotency-Key": f"key-{uuid4()}"}
    first = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=headers
    )
    assert first.status_code == 202
    again = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=headers
    )
    _assert_problem(again, 409, "idempotency-conflict")
    assert len(ingress.publisher.published) == 1


async def test_a_replayed_idempotency_key_says_so() -> None:
    ingress = FakedIngress()
    headers = {**_auth(), "Idempotency-Key": "same"}
    body = {"plan_id": str(uuid4())}
    async with ingress_client(ingress.app) as client:
        first = await client.post("/v1/commands/SubmitPlan", json=body, headers=headers)
        second = await client.post("/v1/commands/SubmitPlan", json=body, headers=headers)
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert len(ingress.publisher.published) == 1


async def test_over_the_rate_limit_is_429_with_retry_after() -> None:
    ingress = FakedIngress(ingress_rate_limit=2)
    async with ingress_client(ingress.app) as client:
        answers = [
            await client.post(
                "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=_auth()
            )
            for _ in range(3)
        ]
    assert [a.status_code for a in answers[:2]] == [202, 202]
    _assert_problem(answers[2], 429, "rate-limited")
    assert int(answers[2].headers["retry-after"]) >= 1
    assert len(ingress.publisher.published) == 2


async def test_the_rate_limit_fails_open_without_redis() -> None:
    ingress = FakedIngress(ingress_rate_limit=1)
    ingress.store.down = True
    async with ingress_client(ingress.app) as client:
        for _ in range(3):
            response = await client.post(
                "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=_auth()
            )
            assert response.status_code == 202
    assert len(ingress.publisher.published) == 3


async def test_an_unconfirmed_publish_is_503_with_retry_after(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    ingress.publisher.failing = True
    response = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=_auth()
    )
    problem = _assert_problem(response, 503, "broker-unavailable")
    assert response.headers["retry-after"] == "1"
    assert "command_id" not in problem  # nothing was accepted: nothing to follow
    assert ingress.store.markers == {}  # no status URL says `accepted`


async def test_an_unreachable_key_store_is_503_not_500(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    ingress.keys.failing = True
    response = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=_auth()
    )
    _assert_problem(response, 503, "auth-unavailable")


def _losing_first_publish(ingress: FakedIngress) -> None:
    """The broker takes each message, but the confirm of an id's first publish is lost."""
    seen: set[str] = set()
    publisher = ingress.publisher

    async def publish(command: OutgoingCommand) -> None:
        publisher.published.append(command)  # it reached the broker...
        if command.message_id not in seen:
            seen.add(command.message_id)
            raise PublishOutcomeUnknownError("confirm timeout")  # ...but no confirm came

    publisher.publish = publish  # type: ignore[method-assign]


async def test_a_lost_confirm_is_504_naming_a_key_whose_retry_carries_the_same_id(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    _losing_first_publish(ingress)
    body = {"plan_id": str(uuid4())}
    lost = await client.post("/v1/commands/SubmitPlan", json=body, headers=_auth())
    problem = _assert_problem(lost, 504, "command-outcome-unknown")
    assert lost.headers["retry-after"] == "1"
    command_id, key = problem["command_id"], problem["idempotency_key"]
    assert problem["status_url"] == f"/v1/commands/{command_id}"
    retry = {**_auth(), "Idempotency-Key": key}
    again = await client.post("/v1/commands/SubmitPlan", json=body, headers=retry)
    assert again.status_code == 202, again.text
    assert again.json()["command_id"] == command_id
    assert [m.message_id for m in ingress.publisher.published] == [command_id, command_id]
    other = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=retry
    )
    _assert_problem(other, 409, "idempotency-conflict")
    assert len(ingress.publisher.published) == 2


async def test_a_lost_confirm_keeps_the_clients_key_for_its_retry(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    _losing_first_publish(ingress)
    headers = {**_auth(), "Idempotency-Key": f"mine-{uuid4()}"}
    body = {"plan_id": str(uuid4())}
    lost = await client.post("/v1/commands/SubmitPlan", json=body, headers=headers)
    problem = _assert_problem(lost, 504, "command-outcome-unknown")
    assert problem["idempotency_key"] == headers["Idempotency-Key"]
    again = await client.post("/v1/commands/SubmitPlan", json=body, headers=headers)
    replayed = await client.post("/v1/commands/SubmitPlan", json=body, headers=headers)
    assert [again.status_code, replayed.status_code] == [202, 202]
    assert again.json()["command_id"] == replayed.json()["command_id"] == problem["command_id"]
    assert len(ingress.publisher.published) == 2  # the lost one and its retry; not the replay


async def test_a_refused_publish_frees_the_key_for_another_body(
    client: httpx.AsyncClient, ingress: FakedIngress
) -> None:
    headers = {**_auth(), "Idempotency-Key": f"refused-{uuid4()}"}
    ingress.publisher.failing = True
    refused = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=headers
    )
    problem = _assert_problem(refused, 503, "broker-unavailable")
    assert "command_id" not in problem  # nothing was accepted: nothing to follow
    ingress.publisher.failing = False
    other = await client.post(
        "/v1/commands/SubmitPlan", json={"plan_id": str(uuid4())}, headers=headers
    )
    assert other.status_code == 202
    assert len(ingress.publisher.published) == 1


COMMAND_ID = "11111111-2222-4333-8444-555555555555"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/commands/StartTask", "POST, OPTIONS"),
        ("PUT", "/v1/commands/SubmitPlan", "POST, OPTIONS"),
        ("DELETE", f"/v1/commands/{COMMAND_ID}", "GET, OPTIONS"),
        ("POST", f"/v1/commands/{COMMAND_ID}", "GET, OPTIONS"),
        ("PATCH", f"/v1/plans/{COMMAND_ID}", "GET, OPTIONS"),
        ("POST", "/v1/projects", "GET, OPTIONS"),
        ("HEAD", "/healthz", "GET, OPTIONS"),
        ("PUT", "/openapi.json", "GET, HEAD, OPTIONS"),
    ],
)
async def test_a_method_a_known_path_does_not_have_is_405_with_allow(
    client: httpx.AsyncClient, ingress: FakedIngress, method: str, path: str, allow: str
) -> None:
    response = await client.request(
        method, path, json={"plan_id": COMMAND_ID}, headers=_auth(ADMIN)
    )
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    if method != "HEAD":  # a HEAD answer has no body
        body = _assert_problem(response, 405, "method-not-allowed")
        assert method in body["detail"]
    assert ingress.publisher.published == []


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/commands/CreateProject", "POST, OPTIONS"),
        (f"/v1/commands/{COMMAND_ID}", "GET, OPTIONS"),
        (f"/v1/commands/{COMMAND_ID.upper()}", "GET, OPTIONS"),
        ("/v1/tasks", "GET, OPTIONS"),
        ("/readyz", "GET, OPTIONS"),
        ("/docs", "GET, HEAD, OPTIONS"),
    ],
)
async def test_options_on_a_known_path_is_204_with_allow_and_needs_no_credentials(
    client: httpx.AsyncClient, path: str, allow: str
) -> None:
    response = await client.options(path)
    assert (response.status_code, response.content) == (204, b"")
    assert response.headers["allow"] == allow


@pytest.mark.parametrize(
    ("method", "path", "slug"),
    [
        ("GET", "/v2/nothing", "not-found"),
        ("OPTIONS", "/v2/nothing", "not-found"),
        ("DELETE", "/v1/commands/a/b", "not-found"),
        ("GET", "/v1/commands/not-a-command-or-id", "not-found"),
        ("OPTIONS", "/v1/commands/not-a-command-or-id", "not-found"),
        ("POST", "/v1/commands/LaunchRocket", "unknown-command-type"),
    ],
)
async def test_an_unknown_path_is_404_whatever_the_method(
    client: httpx.AsyncClient, method: str, path: str, slug: str
) -> None:
    response = await client.request(method, path, headers=_auth())
    _assert_problem(response, 404, slug)
    assert "allow" not in response.headers


async def test_a_path_with_a_trailing_slash_is_still_redirected(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/plans/", headers=_auth(READER))
    assert (response.status_code, response.headers["location"]) == (307, "http://ingress/v1/plans")


def _project(name: bytes = b"p", approver: bytes = b"key:a") -> bytes:
    # Escapes written out as the client sends them: json.dumps would escape them itself.
    return (
        b'{"project_id": "%s", "name": "%s", "policy": {"approvers": ["%s"], '
        b'"required_approvals": 1}}' % (str(uuid4()).encode(), name, approver)
    )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (_project(name=b"a\\u0000b"), ["body.name"]),
        # a principal id's pattern refuses control characters itself
        (_project(approver=b"key:\\u0000"), ["body.policy.approvers.0", "body.policy.approvers"]),
        # pydantic refuses these itself (and the tuple it leaves empty is too short)
        (_project(approver=b"\\ud800"), ["body.policy.approvers.0", "body.policy.approvers"]),
        (_project(name=b"\\udfff!"), ["body.name"]),
        (_project(name=b"\xed\xa0\x80"), ["body.name"]),  # raw bytes: json.loads decodes them
    ],
    ids=["nul", "nul in a principal", "lone surrogate nested", "low surrogate", "raw surrogate"],
)
async def test_text_the_database_cannot_store_is_422_naming_the_field(
    client: httpx.AsyncClient, ingress: FakedIngress, body: bytes, fields: list[str]
) -> None:
    response = await client.post(
        "/v1/commands/CreateProject",
        content=body,
        headers={**_auth(), "Content-Type": "application/json"},
    )
    problem = _assert_problem(response, 422, "validation")
    assert [error["field"] for error in problem["errors"]] == fields
    assert ingress.publisher.published == []


@pytest.mark.parametrize("key", ["a\\u0000", "\\u0000", "\\ud800"])
async def test_an_unstorable_key_is_422_not_accepted(
    client: httpx.AsyncClient, ingress: FakedIngress, key: str
) -> None:
    body = b'{"plan_id": "%s", "%s": 1}' % (str(uuid4()).encode(), key.encode())
    response = await client.post(
        "/v1/commands/SubmitPlan",
        content=body,
        headers={**_auth(), "Content-Type": "application/json"},
    )
    problem = _assert_problem(response, 422, "validation")
    assert problem["errors"]
    assert ingress.publisher.published == []
