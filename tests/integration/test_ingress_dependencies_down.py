"""The ingress with a dependency really unreachable (a closed loopback port, not a fake).

- PostgreSQL unreachable: status and state reads answer `503 database-unavailable` and
  `/readyz` is `503 not-ready` naming the database (docs/http.md). The keys are still
  checked against the session's real database, so the request gets as far as the read.
- Redis unreachable: `/readyz` stays `200` and reports `redis` as degraded; commands are
  still accepted (Redis is reported, not required).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from infra.auth import SqlApiKeyStore
from infra.redis_store import RedisIngressStore
from producers.ingress.state import RESOURCES
from tests.ingress_support import (
    IngressKeys,
    closed_port,
    ingress_app,
    ingress_client,
    make_test_keys,
    tap,
)
from tests.processor_support import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

PROBLEMS = "https://hisho.dev/problems/"


@pytest.fixture(scope="module")
async def keys(engine: AsyncEngine) -> IngressKeys:
    return await make_test_keys(engine)


@pytest.fixture
async def without_database(
    settings: Settings,
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,  # declares the topology the ingress needs
) -> AsyncIterator[httpx.AsyncClient]:
    """An ingress whose database is a closed port; its keys are read from the real one."""
    nowhere = create_async_engine(
        f"postgresql+asyncpg://hisho:hisho@127.0.0.1:{closed_port()}/hisho",
        connect_args={"timeout": 2},
    )
    keys = SqlApiKeyStore(engine)
    try:
        async with (
            ingress_app(settings, engine=nowhere, key_store=keys) as app,
            ingress_client(app) as http,
        ):
            yield http
    finally:
        await nowhere.dispose()


@pytest.fixture
async def without_redis(
    settings: Settings,
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,  # declares the topology the ingress needs
) -> AsyncIterator[httpx.AsyncClient]:
    """An ingress whose Redis is a closed port (real client, real connection refused)."""
    redis = RedisIngressStore.from_url(
        f"redis://127.0.0.1:{closed_port()}/0", timeout=settings.ingress_redis_timeout
    )
    try:
        async with (
            ingress_app(settings, engine=engine, redis=redis) as app,
            ingress_client(app) as http,
        ):
            yield http
    finally:
        await redis.aclose()


def _assert_unavailable(response: httpx.Response, slug: str) -> dict[str, object]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    body: dict[str, object] = response.json()
    assert body["type"] == PROBLEMS + slug
    return body


async def test_without_postgresql_a_status_read_is_503_database_unavailable(
    without_database: httpx.AsyncClient, keys: IngressKeys
) -> None:
    response = await without_database.get(
        f"/v1/commands/{uuid4()}", headers=IngressKeys.bearer(keys.reader)
    )
    _assert_unavailable(response, "database-unavailable")


@pytest.mark.parametrize("resource", [r.path for r in RESOURCES])
async def test_without_postgresql_state_reads_are_503_database_unavailable(
    without_database: httpx.AsyncClient, keys: IngressKeys, resource: str
) -> None:
    reader = IngressKeys.bearer(keys.reader)
    one = await without_database.get(f"/v1/{resource}/{uuid4()}", headers=reader)
    listed = await without_database.get(f"/v1/{resource}", headers=reader)
    _assert_unavailable(one, "database-unavailable")
    _assert_unavailable(listed, "database-unavailable")


async def _readyz_once_the_broker_is_connected(client: httpx.AsyncClient) -> httpx.Response:
    """`/readyz` once the publisher's background connection is up (bounded)."""

    async def connected() -> httpx.Response:
        response = await client.get("/readyz")
        assert response.json()["checks"]["broker"] == "ok", response.text
        return response

    return await eventually(connected, 15.0)


async def test_without_postgresql_readyz_is_503_naming_the_database(
    without_database: httpx.AsyncClient,
) -> None:
    response = await _readyz_once_the_broker_is_connected(without_database)
    body = _assert_unavailable(response, "not-ready")
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert str(checks["database"]).startswith("unreachable"), checks
    assert checks["broker"] == "ok"
    assert checks["redis"] == "ok"


async def test_without_redis_readyz_is_200_and_reports_redis_unreachable(
    without_redis: httpx.AsyncClient,
) -> None:
    response = await _readyz_once_the_broker_is_connected(without_redis)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert "unreachable" in body["checks"]["redis"], body


async def test_without_redis_a_command_is_still_accepted_and_published(
    without_redis: httpx.AsyncClient, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    async with tap(amqp, "SubmitPlan") as commands:
        response = await without_redis.post(
            "/v1/commands/SubmitPlan",
            json={"plan_id": str(uuid4())},
            headers=IngressKeys.bearer(keys.writer),
        )
        [message] = await commands.take(1)
    assert response.status_code == 202, response.text
    assert message.message_id == response.json()["command_id"]
