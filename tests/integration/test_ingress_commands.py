"""The ingress on the real broker, database and Redis: what it publishes, and the status URL."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import jwt
import pytest
from sqlalchemy import insert

from infra.auth import JwtVerifier
from infra.db.command_status import CommandState
from infra.db.tables import command_status
from infra.redis_store import RedisIngressStore
from tests.ingress_support import (
    IngressKeys,
    closed_port,
    ingress_app,
    ingress_client,
    make_test_keys,
    tap,
)
from tests.processor_support import Deliveries, eventually, running_processor
from tests.processor_support import command_status as command_status_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.db.command_status import CommandStatus
    from infra.settings import Settings

INBOUND = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
async def keys(engine: AsyncEngine) -> IngressKeys:
    return await make_test_keys(engine)


@pytest.fixture
async def client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with ingress_app(settings, engine=engine) as app, ingress_client(app) as http:
        yield http


async def _submit(
    client: httpx.AsyncClient, token: str, body: dict[str, Any] | None = None, **headers: str
) -> httpx.Response:
    return await client.post(
        "/v1/commands/SubmitPlan",
        json=body or {"plan_id": str(uuid4())},
        headers={**IngressKeys.bearer(token), **headers},
    )


async def test_an_accepted_command_is_on_the_broker_with_its_envelope(
    client: httpx.AsyncClient, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    correlation, plan_id = uuid4(), uuid4()
    async with tap(amqp, "SubmitPlan") as commands:
        response = await client.post(
            "/v1/commands/SubmitPlan",
            json={"plan_id": str(plan_id)},
            headers={
                **IngressKeys.bearer(keys.writer),
                "X-Correlation-Id": str(correlation),
                "traceparent": INBOUND,
            },
        )
        assert response.status_code == 202
        command_id = response.json()["command_id"]
        assert response.headers["location"] == f"/v1/commands/{command_id}"
        [message] = await commands.take(1)
    envelope = json.loads(message.body)
    assert message.message_id == command_id == envelope["id"]
    assert message.content_type == "application/json"
    assert message.delivery_mode == 2  # persistent
    assert message.headers["type"] == "SubmitPlan"
    assert message.headers["traceparent"] == envelope["traceparent"]
    assert envelope["type"] == "SubmitPlan"
    assert envelope["data"] == {"plan_id": str(plan_id)}
    assert envelope["actor"] == {"kind": "api_key", "id": keys.ids[0]}
    assert envelope["correlation_id"] == str(correlation)
    assert envelope["causation_id"] is None
    assert envelope["traceparent"].split("-")[1] == INBOUND.split("-")[1]


async def test_without_a_correlation_header_the_command_correlates_to_itself(
    client: httpx.AsyncClient, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    async with tap(amqp, "SubmitPlan") as commands:
        response = await _submit(client, keys.writer)
        [message] = await commands.take(1)
    envelope = json.loads(message.body)
    assert envelope["correlation_id"] == envelope["id"] == response.json()["command_id"]
    assert envelope["traceparent"].startswith("00-")


async def test_one_idempotency_key_gives_one_command_and_a_new_body_a_409(
    client: httpx.AsyncClient, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    body, key = {"plan_id": str(uuid4())}, f"retry-{uuid4()}"
    async with tap(amqp, "SubmitPlan") as commands:
        first = await _submit(client, keys.writer, body, **{"Idempotency-Key": key})
        again = await _submit(client, keys.writer, body, **{"Idempotency-Key": key})
        other = await _submit(client, keys.writer, None, **{"Idempotency-Key": key})
        published = await commands.from_actors(*keys.ids)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["command_id"] == again.json()["command_id"]
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert [env["id"] for env in published] == [first.json()["command_id"]]


@pytest.fixture
async def without_redis(
    settings: Settings, engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an ingress whose Redis is a closed port."""
    dead_redis = RedisIngressStore.from_url(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.2)
    async with (
        ingress_app(settings, engine=engine, redis=dead_redis) as app,
        ingress_client(app) as http,
    ):
        yield http
    await dead_redis.aclose()


async def test_with_redis_unreachable_one_key_still_gives_one_command_id(
    without_redis: httpx.AsyncClient, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    client = without_redis
    body, key = {"plan_id": str(uuid4())}, f"no-redis-{uuid4()}"
    async with tap(amqp, "SubmitPlan") as commands:
        first = await _submit(client, keys.writer, body, **{"Idempotency-Key": key})
        again = await _submit(client, keys.writer, body, **{"Idempotency-Key": key})
        published = await commands.from_actors(*keys.ids)
        status = await client.get(
            first.headers["location"], headers=IngressKeys.bearer(keys.writer)
        )
    assert (first.status_code, again.status_code) == (202, 202)
    command_id = first.json()["command_id"]
    assert again.json()["command_id"] == command_id
    # The key and the accepted marker were kept in PostgreSQL: replayed, published once.
    assert again.headers["idempotent-replayed"] == "true"
    assert [env["id"] for env in published] == [command_id]
    assert status.status_code == 200
    assert status.json()["status"] == "accepted"


async def test_with_redis_unreachable_the_processors_record_answers_a_reused_key(
    without_redis: httpx.AsyncClient,
    settings: Settings,
    engine: AsyncEngine,
    keys: IngressKeys,
    amqp: AbstractRobustConnection,
) -> None:
    client = without_redis
    body, key = {"plan_id": str(uuid4())}, f"no-redis-{uuid4()}"
    async with running_processor(settings, engine, Deliveries()):
        first = await _submit(client, keys.writer, body, **{"Idempotency-Key": key})
        command_id = UUID(first.json()["command_id"])
        # The processor records it (rejected: there is no such plan; a record all the same).
        recorded = await eventually(lambda: _recorded_status(engine, command_id))
        async with tap(amqp, "SubmitPlan") as commands:
            again = await _submit(client, keys.writer, body, **{"Idempotency-Key": key})
            other = await _submit(client, keys.writer, None, **{"Idempotency-Key": key})
            published = await commands.from_actors(*keys.ids)
    assert recorded.status is CommandState.REJECTED
    assert again.status_code == 202
    assert again.json()["command_id"] == str(command_id)
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "https://hisho.dev/problems/idempotency-conflict"
    assert published == []  # neither the replay nor the conflicting body went out


async def _recorded_status(engine: AsyncEngine, command_id: UUID) -> CommandStatus:
    status = await command_status_of(engine, command_id)
    assert status is not None, "not recorded yet"
    return status


async def _record(engine: AsyncEngine, command_id: UUID, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(command_status).values(command_id=command_id, **values))


async def test_status_moves_from_accepted_to_what_the_processor_recorded(
    client: httpx.AsyncClient, keys: IngressKeys, engine: AsyncEngine
) -> None:
    accepted = await _submit(client, keys.writer)
    url, command_id = accepted.headers["location"], UUID(accepted.json()["command_id"])
    first = await client.get(url, headers=IngressKeys.bearer(keys.reader))
    assert first.status_code == 200
    assert first.json()["status"] == "accepted"
    assert first.json()["type"] == "SubmitPlan"
    events = [uuid4(), uuid4()]
    await _record(
        engine, command_id, type="SubmitPlan", status="processed", result_event_ids=events
    )
    later = (await client.get(url, headers=IngressKeys.bearer(keys.writer))).json()
    assert later["status"] == "processed"
    assert later["result_event_ids"] == [str(event) for event in events]


async def test_a_rejected_command_shows_its_problem(
    client: httpx.AsyncClient, keys: IngressKeys, engine: AsyncEngine
) -> None:
    command_id = uuid4()
    problem = {"type": "https://hisho.dev/problems/domain", "title": "Plan is not a draft"}
    await _record(engine, command_id, type="SubmitPlan", status="rejected", problem=problem)
    response = await client.get(
        f"/v1/commands/{command_id}", headers=IngressKeys.bearer(keys.reader)
    )
    assert response.json()["status"] == "rejected"
    assert response.json()["problem"] == problem


async def test_an_unknown_command_id_is_404_and_needs_a_scope(
    client: httpx.AsyncClient, keys: IngressKeys
) -> None:
    url = f"/v1/commands/{uuid4()}"
    unknown = await client.get(url, headers=IngressKeys.bearer(keys.reader))
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    forbidden = await client.get(url, headers=IngressKeys.bearer(keys.bystander))
    assert forbidden.status_code == 403


async def test_a_jwt_user_is_the_actor_of_its_commands(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    secret, subject = "integration-secret-long-enough-for-hs256", f"user-{uuid4()}"
    verifier = JwtVerifier(secret=secret, issuer="https://idp", audience="hisho")
    token = jwt.encode(
        {
            "iss": "https://idp",
            "aud": "hisho",
            "sub": subject,
            "exp": 4102444800,
            "scope": "commands:write",
        },
        secret,
        algorithm="HS256",
    )
    async with (
        ingress_app(settings, engine=engine, jwt=verifier) as app,
        ingress_client(app) as client,
        tap(amqp, "SubmitPlan") as commands,
    ):
        response = await _submit(client, token)
        assert response.status_code == 202
        published = await commands.from_actors(f"https://idp/{subject}")
    assert [env["actor"] for env in published] == [{"kind": "user", "id": f"https://idp/{subject}"}]


async def test_readyz_reports_broker_database_and_redis(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"broker": "ok", "database": "ok", "redis": "ok"}
