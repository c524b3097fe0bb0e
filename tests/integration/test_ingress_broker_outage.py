"""RabbitMQ unreachable (a proxy we cut): POST answers 503 at once and /readyz fails; when it
comes back, commands are accepted again. The shared RabbitMQ is never stopped."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest

from tests.amqp_delay_proxy import loss_noticed
from tests.ingress_support import (
    IngressKeys,
    TcpProxy,
    command_publisher,
    ingress_app,
    ingress_client,
    make_test_keys,
    tap,
)

if TYPE_CHECKING:
    import httpx
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

# Bounds, not measurements: a POST that hangs instead of failing fast trips them.
CONFIRM_TIMEOUT = 1.0
ANSWER_BOUND = CONFIRM_TIMEOUT + 4.0
RECOVERY_BOUND = 20.0


@pytest.fixture(scope="module")
async def keys(engine: AsyncEngine) -> IngressKeys:
    return await make_test_keys(engine)


async def _post(client: httpx.AsyncClient, keys: IngressKeys) -> httpx.Response:
    async with asyncio.timeout(ANSWER_BOUND):
        return await client.post(
            "/v1/commands/SubmitPlan",
            json={"plan_id": str(uuid4())},
            headers=IngressKeys.bearer(keys.writer),
        )


async def _until_accepted(client: httpx.AsyncClient, keys: IngressKeys) -> httpx.Response:
    async with asyncio.timeout(RECOVERY_BOUND):
        while (response := await _post(client, keys)).status_code == 503:
            await asyncio.sleep(0.1)
    return response


async def test_broker_down_is_503_and_not_ready_then_accepted_again(
    settings: Settings, engine: AsyncEngine, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    proxy = TcpProxy.to_url(settings.amqp)
    url = await proxy.start_url()
    try:
        async with (
            command_publisher(
                url, confirm_timeout=CONFIRM_TIMEOUT, reconnect_interval=0.2
            ) as publisher,
            ingress_app(settings, engine=engine, publisher=publisher) as app,
            ingress_client(app) as client,
            tap(amqp, "SubmitPlan") as commands,
        ):
            before = await _post(client, keys)
            proxy.cut()
            await loss_noticed(publisher)  # else the outcome is unknown (504)
            during = [await _post(client, keys) for _ in range(3)]
            not_ready = await client.get("/readyz")
            proxy.restore()
            after = await _until_accepted(client, keys)
            ready = await client.get("/readyz")
            published = await commands.from_actors(*keys.ids)
    finally:
        await proxy.close()
    assert before.status_code == 202
    assert [response.status_code for response in during] == [503, 503, 503]
    assert all(response.headers["retry-after"] for response in during)
    assert all(r.json()["type"].endswith("/broker-unavailable") for r in during)
    assert not_ready.status_code == 503
    assert not_ready.headers["content-type"] == "application/problem+json"
    assert not_ready.json()["checks"]["broker"] == "unreachable"
    assert after.status_code == 202
    assert ready.status_code == 200
    # Exactly the two 202'd commands reached the broker; none of the 503'd ones did.
    assert [env["id"] for env in published] == [
        before.json()["command_id"],
        after.json()["command_id"],
    ]
