"""The ingress's operational surface with fakes: OpenAPI, docs, health, unknown paths."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from events import catalog
from tests.ingress_fakes import ADMIN, FakedIngress
from tests.ingress_support import ingress_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with ingress_client(FakedIngress().app) as http:
        yield http


def _assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://hisho.dev/problems/{slug}"
    assert body["status"] == status
    return body


async def test_unknown_paths_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    _assert_problem(await client.get("/v2/nothing"), 404, "not-found")
    response = await client.delete("/v1/commands/SubmitPlan")
    _assert_problem(response, 405, "method-not-allowed")


async def test_healthz_answers_without_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_openapi_has_one_operation_per_command_and_problem_responses(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    commands = [entry for entry in catalog.entries() if entry.public]
    for entry in commands:
        operation = schema["paths"][f"/v1/commands/{entry.type}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{entry.model.__name__}"}
        for status in ("401", "403", "409", "413", "415", "422", "429", "503"):
            content = operation["responses"][status]["content"]
            assert list(content) == ["application/problem+json"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200


async def test_system_only_commands_are_absent_from_openapi_and_refused_with_403(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    hidden = [entry.type for entry in catalog.entries() if entry.system_only]
    assert "ExpirePlan" in hidden  # the whole list: tests/unit/test_contracts.py
    for command_type in hidden:
        assert f"/v1/commands/{command_type}" not in schema["paths"]
        response = await client.post(
            f"/v1/commands/{command_type}",
            json={"plan_id": str(uuid.uuid4())},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        _assert_problem(response, 403, "command-system-only")


async def test_every_commands_202_links_to_its_status_url(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    accepted = [
        op["post"]["responses"]["202"]
        for path, op in document["paths"].items()
        if path.startswith("/v1/commands/") and "post" in op
    ]
    assert accepted
    for response in accepted:
        link = response["links"]["status"]
        assert link["operationId"] == "get_command_status"
        assert link["parameters"] == {"command_id": "$response.body#/command_id"}
