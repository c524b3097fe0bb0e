"""Live-push test support: the ingress served by uvicorn in process, SSE and WebSocket clients,
and in-app notifications written through the outbox as the processor writes them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvicorn

from events import Actor
from events.notification import NotificationChannel, NotificationPriority, NotificationRequested
from infra.db.pg_uow import PgUnitOfWork
from infra.message_context import MessageContext
from producers.ingress.serve import uvicorn_config
from tests.components_support import free_port
from tests.ingress_support import ingress_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    import httpx
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

PROCESSOR = MessageContext.start(Actor.system("command_processor"))


@dataclass(frozen=True)
class Served:
    """An ingress served on 127.0.0.1 in this process."""

    api: FastAPI
    url: str

    @property
    def ws_url(self) -> str:
        """The WebSocket route's URL."""
        return self.url.replace("http://", "ws://") + "/v1/notifications/ws"


@contextlib.asynccontextmanager
async def served_ingress(settings: Settings) -> AsyncIterator[Served]:
    """The ingress on a process App of its own, served by uvicorn until the block ends.

    It is stopped as `hisho run ingress` stops: its streams end, then uvicorn shuts down.
    """
    async with ingress_app(settings) as api:
        port = free_port()
        server = uvicorn.Server(uvicorn_config(api, host="127.0.0.1", port=port))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if serving.done():
                    serving.result()
                await asyncio.sleep(0.01)
            async with asyncio.timeout(10):
                await api.state.push.feed.consuming.wait()
            yield Served(api, f"http://127.0.0.1:{port}")
        finally:
            api.state.push.hub.close()
            server.should_exit = True
            await asyncio.wait_for(serving, 20)


async def write_notifications(
    engine: AsyncEngine,
    recipients: Iterable[str],
    *,
    channel: NotificationChannel = NotificationChannel.IN_APP,
    subject: str = "Plan approved",
) -> list[uuid.UUID]:
    """One `NotificationRequested` per recipient, through the outbox in one unit of work."""
    ids = []
    uow = PgUnitOfWork(engine)
    async with uow:
        for recipient in recipients:
            notification_id = uuid.uuid4()
            event = NotificationRequested(
                notification_id=notification_id,
                channel=channel,
                priority=NotificationPriority.HIGH,
                recipient=recipient,
                subject=subject,
                body="Your plan was approved.",
                dedup_key=None,
            )
            await uow.outbox.add_event(
                event, aggregate_id=notification_id, aggregate_version=1, context=PROCESSOR
            )
            ids.append(notification_id)
        await uow.commit()
    return ids


@dataclass
class SseEvent:
    """One Server-Sent Event, or a comment (`event` is ":" then)."""

    event: str
    data: str = ""
    id: str | None = None
    received: float = field(default_factory=time.perf_counter)

    def json(self) -> dict[str, Any]:
        """The data, parsed."""
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


class SseClient:
    """Reads an open `text/event-stream` response into events, comments included."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.last_id: str | None = None
        self._lines = response.aiter_lines()

    async def next(self, *, timeout: float = 10.0) -> SseEvent:
        """The next event or comment (retry lines are skipped)."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line.startswith(":"):
                    return SseEvent(":", line[1:].strip())
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                if "event" in fields or "data" in fields:
                    found = SseEvent(fields.get("event", "message"), fields.get("data", ""))
                    found.id = fields.get("id")
                    self.last_id = found.id or self.last_id
                    return found
                fields = {}
        raise EOFError("the stream ended")

    async def notifications(self, count: int, *, timeout: float = 10.0) -> list[SseEvent]:
        """The next `count` notification events (heartbeats skipped)."""
        found: list[SseEvent] = []
        while len(found) < count:
            item = await self.next(timeout=timeout)
            if item.event == "notification":
                found.append(item)
        return found


@contextlib.asynccontextmanager
async def sse(
    http: httpx.AsyncClient, token: str, *, last_event_id: str | None = None
) -> AsyncIterator[SseClient]:
    """An open SSE stream of the token's principal."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with http.stream("GET", "/v1/notifications/stream", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseClient(response)
