"""Live push through the real ingress (uvicorn on 127.0.0.1), RabbitMQ and PostgreSQL.

Notifications are written as the command processor writes them (`NotificationRequested`
through the outbox in a unit of work) and published by the relay, run in process
(`relay_until_published`); SSE and WebSocket clients of the ingress receive them.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
from pydantic import AmqpDsn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from events.notification import NotificationChannel
from infra.auth import Scope, SqlApiKeyStore
from tests.ingress_support import TcpProxy
from tests.push_support import served_ingress, sse, write_notifications
from tests.relay_harness import eventually, relay_until_published

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings
    from tests.push_support import Served, SseClient

pytestmark = pytest.mark.timeout(120)
HEARTBEAT = 0.3  # seconds: short, so the heartbeat test is quick


class Person:
    """A key's principal and token."""

    def __init__(self, key_id: str, token: str) -> None:
        self.principal = f"key:{key_id}"
        self.token = token

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def person(engine: AsyncEngine) -> Person:
    issued = await SqlApiKeyStore(engine).create(scopes=[Scope.STATE_READ], name="push test")
    return Person(issued.key.id, issued.token)


@pytest.fixture(scope="module")
async def ingress(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> AsyncIterator[Served]:
    short = settings.model_copy(update={"push_heartbeat_seconds": HEARTBEAT})
    async with served_ingress(short) as served:
        yield served


@pytest.fixture
async def http(ingress: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingress.url, timeout=10) as client:
        yield client


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(settings.database_dsn)
    yield connection
    await connection.close()


async def until_closed(stream: SseClient) -> None:
    """Read (heartbeats and all) until the server ends the stream: EOFError."""
    while True:
        await stream.next(timeout=20)


async def ws_next(ws: Any, kind: str = "notification", timeout: float = 10) -> dict[str, Any]:
    """The next frame of `kind` (others skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame


async def test_an_sse_and_a_websocket_client_see_the_notification_and_another_principal_nothing(
    ingress: Served, http: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, db: Any
) -> None:
    ana, ben = await person(engine), await person(engine)
    async with (
        sse(http, ana.token) as ana_sse,
        sse(http, ben.token) as ben_sse,
        connect(ingress.ws_url, additional_headers=ana.bearer) as ana_ws,
        connect(ingress.ws_url + f"?access_token={ben.token}") as ben_ws,
    ):
        await ana_ws.send(json.dumps({"after": None}))
        await ben_ws.send(json.dumps({}))
        await ws_next(ana_ws, "heartbeat")  # subscribed (a heartbeat comes after subscribing)
        await ws_next(ben_ws, "heartbeat")
        (notification_id,) = await write_notifications(engine, [ana.principal])
        await write_notifications(engine, [ana.principal], channel=NotificationChannel.EMAIL)
        await relay_until_published(settings, db)
        (seen,) = await ana_sse.notifications(1)
        data = seen.json()
        assert data["notification_id"] == str(notification_id)
        assert (data["recipient"], data["priority"], data["subject"]) == (
            ana.principal,
            "high",
            "Plan approved",
        )
        assert seen.id == str(data["position"])
        frame = await ws_next(ana_ws)
        assert frame["notification"] == data
        assert frame["position"] == data["position"]
        # ben hears heartbeats only: no notification of ana's reaches him, nor the e-mail one
        await write_notifications(engine, [ben.principal])
        await relay_until_published(settings, db)
        (bens,) = await ben_sse.notifications(1)
        assert bens.json()["recipient"] == ben.principal
        assert (await ws_next(ben_ws))["notification"]["recipient"] == ben.principal
        assert int(bens.id or 0) > int(seen.id or 0)


async def test_a_client_disconnected_during_three_notifications_receives_them_in_order(
    http: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, db: Any, ingress: Served
) -> None:
    ana = await person(engine)
    async with sse(http, ana.token) as stream:
        await stream.next()  # subscribed: a heartbeat
        await write_notifications(engine, [ana.principal], subject="before")
        await relay_until_published(settings, db)
        (before,) = await stream.notifications(1)
    missed = []
    for n in range(3):
        missed += await write_notifications(engine, [ana.principal], subject=f"missed {n}")
        await relay_until_published(settings, db)
    async with sse(http, ana.token, last_event_id=before.id) as stream:
        replayed = await stream.notifications(3)
        assert [e.json()["notification_id"] for e in replayed] == [str(i) for i in missed]
        positions = [int(e.id or 0) for e in replayed]
        assert positions == sorted(positions)
        assert positions[0] > int(before.id or 0)
        (live,) = await write_notifications(engine, [ana.principal], subject="after")
        await relay_until_published(settings, db)
        (after,) = await stream.notifications(1)  # live, right after the replay: no duplicate
        assert after.json()["notification_id"] == str(live)
    async with connect(ingress.ws_url, additional_headers=ana.bearer) as ws:
        await ws.send(json.dumps({"after": positions[0]}))
        frames = [await ws_next(ws) for _ in range(3)]
        assert [f["notification"]["notification_id"] for f in frames] == [
            str(missed[1]),
            str(missed[2]),
            str(live),
        ]


async def test_heartbeats_arrive_on_both_streams(
    http: httpx.AsyncClient, engine: AsyncEngine, ingress: Served
) -> None:
    ana = await person(engine)
    async with sse(http, ana.token) as stream:
        comment = await stream.next(timeout=HEARTBEAT * 10)
        assert (comment.event, comment.data) == (":", "heartbeat")
    async with connect(ingress.ws_url) as ws:  # the token in the first frame
        await ws.send(json.dumps({"token": ana.token}))
        assert await ws_next(ws, "heartbeat", timeout=HEARTBEAT * 10) == {"type": "heartbeat"}
    hub = ingress.api.state.push.hub

    async def all_gone() -> bool:
        return bool(hub.subscriptions == 0)

    await eventually(all_gone, timeout=5, what="the clients that left to be unsubscribed")


async def test_an_unauthenticated_client_gets_the_401_problem(
    http: httpx.AsyncClient, ingress: Served
) -> None:
    for headers in ({}, {"Authorization": "Bearer hsh_nonsense"}):
        answer = await http.get("/v1/notifications/stream", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == 401
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ingress.ws_url, additional_headers={"Authorization": "Bearer x"}):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}")["status"] == 401
    async with connect(ingress.ws_url) as ws:  # no token anywhere
        await ws.send(json.dumps({"after": 3}))
        frame = json.loads(await ws.recv())
        assert (frame["type"], frame["problem"]["status"]) == ("error", 401)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008


async def test_stopping_the_ingress_ends_open_streams(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    ana = await person(engine)
    async with (
        served_ingress(settings) as served,
        httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        sse(http, ana.token) as stream,
        connect(served.ws_url, additional_headers=ana.bearer) as ws,
    ):
        await ws.send("{}")
        hub = served.api.state.push.hub

        async def both_subscribed() -> bool:
            return bool(hub.subscriptions == 2)

        await eventually(both_subscribed, timeout=5, what="both clients to subscribe")
        hub.close()  # what `hisho run ingress` does on SIGTERM, before uvicorn stops
        with pytest.raises(EOFError):
            await stream.next(timeout=5)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012


async def test_a_lost_broker_connection_closes_streams_and_the_reconnect_replays_the_gap(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection, db: Any
) -> None:
    proxy = TcpProxy.to_url(settings.amqp)
    through_proxy = settings.model_copy(update={"amqp_url": AmqpDsn(await proxy.start_url())})
    ana = await person(engine)
    try:
        async with (
            served_ingress(through_proxy) as served,
            httpx.AsyncClient(base_url=served.url, timeout=10) as http,
        ):
            async with sse(http, ana.token) as stream:
                await write_notifications(engine, [ana.principal], subject="before")
                await relay_until_published(settings, db)
                (before,) = await stream.notifications(1)
                proxy.cut()  # the ingress's broker connection drops
                (gap,) = await write_notifications(engine, [ana.principal], subject="gap")
                await relay_until_published(settings, db)  # the relay's own connection is up
                proxy.restore()
                with pytest.raises(EOFError):  # closed once the feed is back: reconnect
                    await until_closed(stream)
            async with sse(http, ana.token, last_event_id=before.id) as stream:
                (missed,) = await stream.notifications(1)
                assert missed.json()["notification_id"] == str(gap)
                (live,) = await write_notifications(engine, [ana.principal], subject="after")
                await relay_until_published(settings, db)
                (after,) = await stream.notifications(1, timeout=20)
                assert after.json()["notification_id"] == str(live)
    finally:
        await proxy.close()
