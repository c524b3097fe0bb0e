"""State reads from `aggregate_state`: one aggregate, filtered lists, cursor pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy import insert

from infra.db.state_tables import aggregate_state
from tests.ingress_support import IngressKeys, ingress_app, ingress_client, make_test_keys

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings


@pytest.fixture(scope="module")
async def keys(engine: AsyncEngine) -> IngressKeys:
    return await make_test_keys(engine)


@pytest.fixture
async def client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with ingress_app(settings, engine=engine) as app, ingress_client(app) as http:
        yield http


async def _plans(engine: AsyncEngine, project_id: UUID, statuses: list[str]) -> list[UUID]:
    """Insert plans of one project, one second apart, in order; return their ids."""
    start, ids = datetime.now(UTC), [uuid4() for _ in statuses]
    rows = [
        {
            "aggregate_type": "plan",
            "aggregate_id": plan_id,
            "version": 3,
            "state": {"project_id": str(project_id), "status": status, "title": f"plan {n}"},
            "created_at": start + timedelta(seconds=n),
        }
        for n, (plan_id, status) in enumerate(zip(ids, statuses, strict=True))
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(aggregate_state), rows)
    return ids


async def _get(client: httpx.AsyncClient, keys: IngressKeys, url: str, **params: Any) -> Any:
    response = await client.get(url, params=params, headers=IngressKeys.bearer(keys.reader))
    assert response.status_code == 200, response.text
    return response.json()


async def test_one_plan_is_its_state_with_id_and_version(
    client: httpx.AsyncClient, keys: IngressKeys, engine: AsyncEngine
) -> None:
    project_id = uuid4()
    [plan_id] = await _plans(engine, project_id, ["draft"])
    body = await _get(client, keys, f"/v1/plans/{plan_id}")
    assert body == {
        "id": str(plan_id),
        "version": 3,
        "project_id": str(project_id),
        "status": "draft",
        "title": "plan 0",
    }


async def test_a_missing_aggregate_is_404_and_another_type_does_not_match(
    client: httpx.AsyncClient, keys: IngressKeys, engine: AsyncEngine
) -> None:
    [plan_id] = await _plans(engine, uuid4(), ["draft"])
    for url in (f"/v1/plans/{uuid4()}", f"/v1/tasks/{plan_id}"):
        response = await client.get(url, headers=IngressKeys.bearer(keys.reader))
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


async def test_lists_filter_and_page_with_a_cursor_oldest_first(
    client: httpx.AsyncClient, keys: IngressKeys, engine: AsyncEngine
) -> None:
    project_id = uuid4()
    ids = await _plans(engine, project_id, ["submitted", "draft", "submitted", "submitted"])
    await _plans(engine, uuid4(), ["submitted"])  # another project: never listed
    seen, cursor, pages = [], None, 0
    while True:
        params = {"project_id": str(project_id), "status": "submitted", "limit": 2}
        page = await _get(
            client, keys, "/v1/plans", **params, **({"cursor": cursor} if cursor else {})
        )
        seen += [item["id"] for item in page["items"]]
        pages, cursor = pages + 1, page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(ids[0]), str(ids[2]), str(ids[3])]
    assert pages == 2


async def test_state_reads_need_the_state_scope_and_a_valid_cursor(
    client: httpx.AsyncClient, keys: IngressKeys
) -> None:
    forbidden = await client.get("/v1/plans", headers=IngressKeys.bearer(keys.writer))
    assert forbidden.status_code == 403
    bad = await client.get(
        "/v1/plans", params={"cursor": "garbage!"}, headers=IngressKeys.bearer(keys.reader)
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.cursor"
