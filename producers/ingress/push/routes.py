"""The live-push routes and the process's push parts, added to the ingress by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Depends, Header, WebSocket

from infra.auth import Principal, Scope
from producers.ingress.auth import admit
from producers.ingress.problems import FieldError, ProblemError
from producers.ingress.push.feed import PushFeed
from producers.ingress.push.hub import PushHub
from producers.ingress.push.replay import SqlMissedNotifications
from producers.ingress.push.session import PushStream
from producers.ingress.push.sse import EventStream
from producers.ingress.push.ws import serve_websocket

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import APIRouter
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.amqp import AmqpConnection
    from infra.settings import Settings
    from producers.ingress.auth import Authenticator
    from producers.ingress.push.session import MissedNotifications
    from producers.ingress.rate_limit import RateLimiter

STREAM_PATH = "/v1/notifications/stream"
WS_PATH = "/v1/notifications/ws"
ANYONE = tuple(Scope)  # any authenticated caller; each receives only their own


@dataclass
class Push:
    """One ingress process's fan-out, its feed and its log reader."""

    hub: PushHub
    feed: PushFeed | None
    log: MissedNotifications
    settings: Settings

    @classmethod
    def build(cls, settings: Settings, amqp: AmqpConnection | None, engine: AsyncEngine) -> Push:
        """The parts on the process's broker connection and engine (no feed without one)."""
        hub = PushHub(queue_limit=settings.push_queue_limit)
        feed = PushFeed(amqp, hub) if amqp is not None else None
        return cls(hub, feed, SqlMissedNotifications(engine), settings)

    def start(self) -> None:
        """Start consuming the process's push queue (in the background)."""
        if self.feed is not None:
            self.feed.start()

    async def close(self) -> None:
        """End every stream (new ones are refused), then stop the feed."""
        self.hub.close()
        if self.feed is not None:
            await self.feed.close()

    def stream(self, principal: Principal, after: int | None) -> PushStream:
        """The frames of one client of `principal` (subscribed now)."""
        return PushStream(
            self.hub,
            self.log,
            principal.actor.principal,
            after=after,
            replay_limit=self.settings.push_replay_limit,
            heartbeat=self.settings.push_heartbeat_seconds,
        )


def _last_event_id(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise ProblemError(
            422,
            "validation",
            "Validation failed",
            "invalid input: header.Last-Event-ID",
            errors=[FieldError(pointer="", field="header.Last-Event-ID", message="not a position")],
        )
    return int(value.strip())


def add_push_routes(
    router: APIRouter,
    *,
    push: Push,
    authenticator: Authenticator,
    limiter: RateLimiter,
    reader: Callable[..., Awaitable[Principal]],
) -> None:
    """`GET /v1/notifications/stream` (SSE) and `/v1/notifications/ws` (WebSocket).

    Neither is in the OpenAPI document: an endless response is no request/response pair.
    """
    settings = push.settings

    # Defaults, not `Annotated[...]`: these annotations are strings, and `reader` is local.
    async def stream(
        principal: Principal = Depends(reader),
        last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=20),
    ) -> EventStream:
        after = _last_event_id(last_event_id)
        return EventStream(
            push.stream(principal, after),
            retry_ms=settings.push_retry_ms,
            send_timeout=settings.push_send_timeout_seconds,
        )

    async def authenticate(authorization: str | None) -> Principal:
        return await admit(authenticator, limiter, ANYONE, authorization)

    async def websocket(websocket: WebSocket) -> None:
        await serve_websocket(
            websocket,
            authenticate=authenticate,
            stream=push.stream,
            send_timeout=settings.push_send_timeout_seconds,
        )

    router.add_api_route(STREAM_PATH, stream, methods=["GET"], include_in_schema=False)
    router.add_api_websocket_route(WS_PATH, websocket)
