"""A publisher confirm that comes late is an unknown outcome, not a refusal (issue 13, item 1).

The ingress publishes through a proxy that holds back the broker's frames. With a confirm
timeout of 0.3 s and the confirm held back 1 s, the command reaches the broker but the
ingress cannot know it: it answers 504 with the command id and an idempotency key, and a
retry with that key carries the same id. A real command processor applies it once: one
status row, one event, although two messages with that id reached the broker. When the
broker is gone before the publish, the answer is 503 and nothing is published.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from infra.db.command_status import CommandState
from tests.amqp_delay_proxy import AmqpDelayProxy, loss_noticed
from tests.ingress_support import (
    IngressKeys,
    command_publisher,
    ingress_app,
    ingress_client,
    make_test_keys,
    tap,
)
from tests.processor_support import (
    Deliveries,
    command_status,
    events_caused_by,
    eventually,
    running_processor,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from aio_pika.abc import AbstractRobustConnection
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.db.command_status import CommandStatus
    from infra.settings import Settings
    from producers.ingress.publisher import AmqpCommandPublisher

CONFIRM_TIMEOUT = 0.3
HELD_BACK = 1.0  # well past the confirm timeout


@pytest.fixture(scope="module")
async def keys(engine: AsyncEngine) -> IngressKeys:
    return await make_test_keys(engine)


@pytest.fixture
async def proxy(settings: Settings) -> AsyncIterator[AmqpDelayProxy]:
    proxied = AmqpDelayProxy(settings.amqp)
    yield proxied
    await proxied.close()


@pytest.fixture
async def publisher(proxy: AmqpDelayProxy) -> AsyncIterator[AmqpCommandPublisher]:
    url = await proxy.start_url()
    async with command_publisher(
        url, confirm_timeout=CONFIRM_TIMEOUT, reconnect_interval=0.2
    ) as publishing:
        yield publishing


@pytest.fixture
async def app(
    settings: Settings, engine: AsyncEngine, publisher: AmqpCommandPublisher
) -> AsyncIterator[FastAPI]:
    async with ingress_app(settings, engine=engine, publisher=publisher) as ingress:
        yield ingress


def _project() -> dict[str, Any]:
    return {
        "project_id": str(uuid4()),
        "name": "late confirm",
        "policy": {"approvers": ["key:a"], "required_approvals": 1},
    }


async def _create(
    client: httpx.AsyncClient, keys: IngressKeys, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post(
        "/v1/commands/CreateProject",
        json=body,
        headers={**IngressKeys.bearer(keys.writer), **headers},
    )


async def _processed(engine: AsyncEngine, command_id: UUID) -> CommandStatus:
    status = await command_status(engine, command_id)
    assert status is not None, "not recorded yet"
    return status


async def test_a_late_confirm_is_504_and_its_retry_is_one_command_in_effect(  # noqa: PLR0917
    settings: Settings,
    engine: AsyncEngine,
    keys: IngressKeys,
    amqp: AbstractRobustConnection,
    proxy: AmqpDelayProxy,
    app: FastAPI,
) -> None:
    body = _project()
    async with (
        running_processor(settings, engine, Deliveries()),
        ingress_client(app) as client,
        tap(amqp, "CreateProject") as commands,
    ):
        proxy.delay(HELD_BACK)
        lost = await _create(client, keys, body)  # no Idempotency-Key: the server assigns one
        proxy.delay(0)
        await proxy.flushed()  # the late confirm has come by now (and was too late)
        problem = lost.json()
        assert lost.status_code == 504, lost.text
        command_id, key = UUID(problem["command_id"]), problem["idempotency_key"]
        retry = await _create(client, keys, body, **{"Idempotency-Key": key})
        assert retry.status_code == 202, retry.text
        assert UUID(retry.json()["command_id"]) == command_id
        status = await eventually(lambda: _processed(engine, command_id))
        reached = [message.message_id for message in await commands.take(2)]
    assert problem["type"] == "https://hisho.dev/problems/command-outcome-unknown"
    assert problem["status_url"] == f"/v1/commands/{command_id}"
    assert lost.headers["retry-after"] == "1"
    # Both publishes reached the broker (the first was taken: its confirm only came late)...
    assert reached == [str(command_id), str(command_id)]
    # ...and the processor applied the command once: one status, one event.
    assert status.status is CommandState.PROCESSED
    events = await events_caused_by(engine, command_id)
    assert [event.type for event in events] == ["ProjectCreated"]


async def test_a_retry_of_a_late_confirm_with_another_body_is_409(
    keys: IngressKeys,
    amqp: AbstractRobustConnection,
    proxy: AmqpDelayProxy,
    app: FastAPI,
) -> None:
    async with ingress_client(app) as client, tap(amqp, "CreateProject") as commands:
        proxy.delay(HELD_BACK)
        lost = await _create(client, keys, _project(), **{"Idempotency-Key": f"k-{uuid4()}"})
        proxy.delay(0)
        await proxy.flushed()
        assert lost.status_code == 504, lost.text
        other = await _create(
            client, keys, _project(), **{"Idempotency-Key": lost.json()["idempotency_key"]}
        )
        reached = await commands.drain()
    assert other.status_code == 409, other.text
    assert [message.message_id for message in reached] == [lost.json()["command_id"]]


async def test_a_broker_gone_before_the_publish_is_503_and_nothing_is_published(
    keys: IngressKeys,
    amqp: AbstractRobustConnection,
    proxy: AmqpDelayProxy,
    publisher: AmqpCommandPublisher,
    app: FastAPI,
) -> None:
    body = _project()
    async with ingress_client(app) as client, tap(amqp, "CreateProject") as commands:
        assert publisher.ready
        await proxy.close()
        await loss_noticed(publisher)  # known before the publish: nothing is sent
        refused = await _create(client, keys, body, **{"Idempotency-Key": f"k-{uuid4()}"})
        reached = await commands.drain()
    assert refused.status_code == 503, refused.text
    assert refused.json()["type"] == "https://hisho.dev/problems/broker-unavailable"
    assert "command_id" not in refused.json()
    assert reached == []
