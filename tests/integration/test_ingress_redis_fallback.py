"""Redis really unreachable, PostgreSQL and RabbitMQ real: the ingress keeps its idempotency
records and accepted markers in PostgreSQL, and after Redis is back (empty) they still count.

No processor runs: whatever is answered comes from the ingress, before anything is recorded.
Redis is a closed loopback port, or a `redis-server` of this module's own that it stops and
starts again (never the shared stack's).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from infra.db.ingress_tables import ingress_accepted, ingress_idempotency
from infra.redis_store import RedisIngressStore
from infra.stack.probes import redis_ping
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
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    import httpx
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings


@pytest.fixture(scope="module")
async def keys(engine: AsyncEngine) -> IngressKeys:
    return await make_test_keys(engine)


@pytest.fixture
async def without_redis(
    settings: Settings, engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an ingress whose Redis is a closed port."""
    dead = RedisIngressStore.from_url(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.2)
    async with ingress_app(settings, engine=engine, redis=dead) as app, ingress_client(app) as http:
        yield http
    await dead.aclose()


async def _submit(
    client: httpx.AsyncClient, keys: IngressKeys, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = IngressKeys.bearer(keys.writer)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/v1/commands/SubmitPlan", json=body, headers=headers)


def _plan() -> dict[str, Any]:
    return {"plan_id": str(uuid4())}


async def _kept(engine: AsyncEngine, command_id: str) -> tuple[Any, Any]:
    """The fallback's idempotency record and accepted marker of a command (or None)."""
    async with engine.connect() as conn:
        record = (
            await conn.execute(
                select(ingress_idempotency).where(
                    ingress_idempotency.c.command_id == UUID(command_id)
                )
            )
        ).first()
        marker = (
            await conn.execute(
                select(ingress_accepted).where(ingress_accepted.c.command_id == UUID(command_id))
            )
        ).first()
    return record, marker


async def test_without_redis_a_reused_key_with_another_body_is_409_and_nothing_more_published(
    without_redis: httpx.AsyncClient,
    keys: IngressKeys,
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,
) -> None:
    body, key = _plan(), f"fallback-{uuid4()}"
    async with tap(amqp, "SubmitPlan") as commands:
        first = await _submit(without_redis, keys, body, key)
        other = await _submit(without_redis, keys, _plan(), key)
        again = await _submit(without_redis, keys, body, key)
        published = await commands.from_actors(*keys.ids)
    assert first.status_code == 202
    command_id = first.json()["command_id"]
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "https://hisho.dev/problems/idempotency-conflict"
    assert again.status_code == 202
    assert again.json()["command_id"] == command_id
    assert again.headers["idempotent-replayed"] == "true"
    assert [env["id"] for env in published] == [command_id]  # once, the first body
    record, _ = await _kept(engine, command_id)
    assert record is not None
    assert record.state == "published"


async def test_without_redis_racing_bodies_for_one_key_get_one_202(
    without_redis: httpx.AsyncClient, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    key = f"fallback-race-{uuid4()}"
    async with tap(amqp, "SubmitPlan") as commands:
        answers = await asyncio.gather(
            *(_submit(without_redis, keys, _plan(), key) for _ in range(6))
        )
        published = await commands.from_actors(*keys.ids)
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [202, 409, 409, 409, 409, 409]
    [winner] = [answer for answer in answers if answer.status_code == 202]
    assert [env["id"] for env in published] == [winner.json()["command_id"]]


async def test_without_redis_a_fresh_commands_status_url_answers_accepted(
    without_redis: httpx.AsyncClient, keys: IngressKeys, engine: AsyncEngine
) -> None:
    posted = await _submit(without_redis, keys, _plan())
    assert posted.status_code == 202
    status = await without_redis.get(
        posted.headers["location"], headers=IngressKeys.bearer(keys.reader)
    )
    assert status.status_code == 200
    assert status.json()["status"] == "accepted"
    assert status.json()["type"] == "SubmitPlan"
    _, marker = await _kept(engine, posted.json()["command_id"])
    assert marker is not None
    assert marker.expires_at > marker.expires_at.now(marker.expires_at.tzinfo)
    # An id the fallback does not know may have been accepted into Redis before: 503, no 404.
    unknown = await without_redis.get(
        f"/v1/commands/{uuid4()}", headers=IngressKeys.bearer(keys.reader)
    )
    assert unknown.status_code == 503
    assert unknown.json()["type"] == "https://hisho.dev/problems/status-unavailable"


class PrivateRedis:
    """A `redis-server` of our own on a free loopback port, stopped and started at will."""

    def __init__(self, workdir: Path) -> None:
        self.port = closed_port()
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        argv += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self._workdir)]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not redis_ping(self.port):
            assert self._process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=20)
        self._process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _redis_answers(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.json()["checks"]["redis"] == "ok"


async def test_with_redis_back_and_empty_the_outages_keys_hold_and_new_keys_are_redis_again(
    private_redis: PrivateRedis,
    settings: Settings,
    engine: AsyncEngine,
    keys: IngressKeys,
    amqp: AbstractRobustConnection,
) -> None:
    store = RedisIngressStore.from_url(private_redis.url, timeout=0.2)
    body, key, later_key = _plan(), f"outage-{uuid4()}", f"after-{uuid4()}"
    async with (
        ingress_app(settings, engine=engine, redis=store) as app,
        ingress_client(app) as client,
        tap(amqp, "SubmitPlan") as commands,
    ):
        private_redis.stop()
        during = await _submit(client, keys, body, key)
        fresh = await _submit(client, keys, _plan())
        private_redis.start()  # back, and empty
        await eventually(lambda: _redis_answers(client))
        other = await _submit(client, keys, _plan(), key)
        again = await _submit(client, keys, body, key)
        status = await client.get(
            fresh.headers["location"], headers=IngressKeys.bearer(keys.reader)
        )
        later = await _submit(client, keys, _plan(), later_key)
        later_other = await _submit(client, keys, _plan(), later_key)
        later_status = await client.get(
            later.headers["location"], headers=IngressKeys.bearer(keys.reader)
        )
        published = await commands.from_actors(*keys.ids)
    await store.aclose()
    assert (during.status_code, fresh.status_code, other.status_code) == (202, 202, 409)
    assert (again.status_code, again.json()["command_id"]) == (202, during.json()["command_id"])
    assert again.headers["idempotent-replayed"] == "true"
    assert status.json()["status"] == "accepted"
    # After the outage a key is Redis's again, as before it: 409 from Redis, marker in Redis.
    assert (later.status_code, later_other.status_code) == (202, 409)
    assert later_status.json()["status"] == "accepted"
    later_id = later.json()["command_id"]
    assert await _kept(engine, later_id) == (None, None)
    async with Redis.from_url(private_redis.url) as direct:
        assert await direct.get(f"hisho:ingress:cmd:{later_id}") == b"SubmitPlan"
        record = await direct.get(f"hisho:ingress:idem:{later_id}")
    assert isinstance(record, bytes)
    assert record.endswith(b":published")
    ids = [during.json()["command_id"], fresh.json()["command_id"], later_id]
    assert [env["id"] for env in published] == ids
