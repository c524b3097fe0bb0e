"""`/v1/people` on fakes: refusals come before the database; a database down is a 503 problem.

`FakedIngress`'s engine points at a closed port, so any operation that reaches the directory
cannot be answered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.ingress_fakes import ADMIN, READER, FakedIngress
from tests.ingress_support import IngressKeys, ingress_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

PID = "user:https://issuer.example/sub"
BODY = {"principal_id": PID, "display_name": "Ada"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with ingress_client(FakedIngress().app) as http:
        yield http


def _slug(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.status_code, response.json()["type"].rsplit("/", 1)[-1]


async def test_an_unreachable_directory_is_503_with_retry_after(client: httpx.AsyncClient) -> None:
    admin = IngressKeys.bearer(ADMIN)
    for response in (
        await client.post("/v1/people", json=BODY, headers=admin),
        await client.get("/v1/people", headers=admin),
        await client.get(f"/v1/people/{PID}", headers=admin),
        await client.patch(f"/v1/people/{PID}", json={"display_name": "A"}, headers=admin),
        await client.delete(f"/v1/people/{PID}", headers=admin),
    ):
        assert _slug(response) == (503, "database-unavailable")
        assert response.headers["retry-after"] == "1"


async def test_refusals_are_decided_before_the_directory_is_asked(
    client: httpx.AsyncClient,
) -> None:
    reader = IngressKeys.bearer(READER)
    assert _slug(await client.get("/v1/people", headers=reader)) == (403, "forbidden")
    assert _slug(await client.get(f"/v1/people/{PID}", headers=reader)) == (403, "forbidden")
    assert _slug(await client.post("/v1/people", json=BODY, headers=reader)) == (403, "forbidden")
    assert _slug(await client.delete(f"/v1/people/{PID}")) == (401, "unauthorized")
    bad = {**BODY, "email": "nobody"}
    assert _slug(await client.post("/v1/people", json=bad, headers=reader)) == (422, "validation")
    put = await client.put(f"/v1/people/{PID}", json=BODY, headers=reader)
    assert _slug(put) == (405, "method-not-allowed")
    assert put.headers["allow"] == "GET, PATCH, DELETE, OPTIONS"
