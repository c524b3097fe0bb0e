"""`GET /v1/notifications/stream`: the caller's in-app notifications as Server-Sent Events.

Each notification is `id: <position>`, `event: notification`, `data: <JSON>`; a comment line
(`: heartbeat`) comes after every `heartbeat` seconds without one. A reconnecting client
sends `Last-Event-ID` and is first replayed what it missed (`push.session`); more than one
connection replays ends with `event: truncated` (`data: {"position": …}`) and the response
ends: reconnect with that position as `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import structlog
from starlette.responses import Response

from producers.ingress.push.hub import PushedNotification, SubscriptionClosedError
from producers.ingress.push.session import Truncated

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from producers.ingress.push.session import Heartbeat, PushStream

log = structlog.get_logger("hisho.ingress.push")

HEADERS = {
    "cache-control": "no-store",
    "x-accel-buffering": "no",  # a reverse proxy must not hold the stream back
}


def sse_frame(item: PushedNotification | Heartbeat | Truncated) -> bytes:
    """One frame of the stream."""
    if isinstance(item, PushedNotification):
        return (
            f"id: {item.position}\nevent: notification\ndata: {item.model_dump_json()}\n\n".encode()
        )
    if isinstance(item, Truncated):
        data = json.dumps({"position": item.position})
        return f"id: {item.position}\nevent: truncated\ndata: {data}\n\n".encode()
    return b": heartbeat\n\n"


class EventStream(Response):
    """A `text/event-stream` response fed by `push_stream`, ended when the client leaves.

    Every write must finish within `send_timeout` s: a client that stops reading is cut off
    (the connection is closed) instead of holding the stream open forever.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        frames: PushStream,
        *,
        retry_ms: int,
        send_timeout: float,
    ) -> None:
        # No `Response.__init__`: it would add `content-length: 0` to an endless body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            *((name.encode(), value.encode()) for name, value in HEADERS.items()),
        ]
        self._frames = frames
        self._retry_ms = retry_ms
        self._send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        """Send the frames until the stream ends or the client leaves."""
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            writer = asyncio.ensure_future(self._write(send))
            leaving = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait({writer, leaving}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (writer, leaving):
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await leaving
                with contextlib.suppress(asyncio.CancelledError, TimeoutError, OSError):
                    await writer
        finally:
            await self._frames.aclose()  # unsubscribed, however the response ended
        if writer.cancelled() or writer.exception() is not None:
            # The client left, or a write blocked past `send_timeout`: uvicorn closes the
            # connection of a response that never completed.
            return
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, send: Send) -> None:
        await self._body(send, f"retry: {self._retry_ms}\n\n".encode())
        try:
            async for item in self._frames:
                await self._body(send, sse_frame(item))
        except SubscriptionClosedError as exc:
            log.info("push stream closed", reason=exc.reason)

    async def _body(self, send: Send, chunk: bytes) -> None:
        async with asyncio.timeout(self._send_timeout):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _disconnected(receive: Receive) -> Any:  # noqa: ANN401
    while (message := await receive())["type"] != "http.disconnect":
        pass
    return message
