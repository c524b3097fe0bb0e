"""`hisho run ingress` as a process: live push end to end, and SIGTERM with streams open.

A notification written through the outbox and published by `hisho run relay` reaches an SSE
client of the ingress process; SIGTERM then ends the open SSE stream and WebSocket (1012)
and the process exits 0 promptly: open streams never hold its shutdown up.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from infra.auth import Scope, SqlApiKeyStore
from tests.components_support import component_env, components, free_port
from tests.ingress_support import hisho_cli
from tests.push_support import sse, write_notifications

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

pytestmark = pytest.mark.timeout(180)


async def test_sigterm_ends_open_streams_and_the_ingress_exits_cleanly(
    settings: Settings,
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    port = free_port()
    env = component_env(settings, HISHO_INGRESS_PORT=str(port), HISHO_RELAY_POLL_INTERVAL="0.1")
    hisho_cli(env, "migrate")
    issued = await SqlApiKeyStore(engine).create(scopes=[Scope.STATE_READ], name="push e2e")
    principal, token = f"key:{issued.key.id}", issued.token
    url = f"http://127.0.0.1:{port}"
    with components(env, tmp_path_factory.mktemp("push"), ("relay", "ingress")) as run:
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as http,
            sse(http, token) as stream,
            connect(f"ws://127.0.0.1:{port}/v1/notifications/ws") as ws,
        ):
            await ws.send(json.dumps({"token": token}))
            (notification_id,) = await write_notifications(engine, [principal])
            (seen,) = await stream.notifications(1, timeout=30)
            assert seen.json()["notification_id"] == str(notification_id)
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["notification"]["notification_id"] == str(notification_id)
            started = time.monotonic()
            code = await asyncio.to_thread(run.stop, "ingress")
            assert code == 0, run.log("ingress")
            assert time.monotonic() - started < 10
            with pytest.raises(EOFError):
                await stream.next(timeout=5)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1012
        assert set(run.stop_all().values()) <= {0}
