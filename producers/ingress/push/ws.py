"""`/v1/notifications/ws`: the caller's in-app notifications as WebSocket JSON frames.

The client's first frame subscribes: `{"after": <position> | null, "token": "<bearer>"}`
(`token` only when neither `Authorization: Bearer` nor `?access_token=` carried it; `after`
only when reconnecting). Then the server sends, as text frames:

- `{"type": "notification", "position": 12, "notification": {...}}`;
- `{"type": "heartbeat"}` after every `heartbeat` seconds without a notification;
- `{"type": "truncated", "position": 40}`, then closes (1000): more were missed than one
  connection replays, reconnect with `{"after": 40}`.

A bad header or query token refuses the handshake with the 401 problem; a missing or bad
token in the first frame, or a frame that is not a subscription, gets an `error` frame with
the problem and close 1008. A slow client, or one left behind by a lost broker connection,
is closed with 1013 (try again later: reconnect with `after`); a stopping ingress closes
with 1012.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from producers.ingress.problems import ProblemError, problem_response
from producers.ingress.push.hub import SHUTDOWN, PushedNotification, SubscriptionClosedError
from producers.ingress.push.session import Truncated

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from infra.auth import Principal
    from producers.ingress.push.session import Heartbeat, PushStream

FIRST_FRAME_TIMEOUT = 10.0  # seconds to send the subscription frame
POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER = 1008, 1012, 1013


class Subscribe(BaseModel):
    """The client's first frame."""

    model_config = ConfigDict(extra="forbid")

    after: int | None = Field(default=None, ge=0)
    token: str | None = Field(default=None, max_length=4096)


def ws_frame(item: PushedNotification | Heartbeat | Truncated) -> dict[str, Any]:
    """One frame of the stream, as JSON."""
    if isinstance(item, PushedNotification):
        data = item.model_dump(mode="json")
        return {"type": "notification", "position": item.position, "notification": data}
    if isinstance(item, Truncated):
        return {"type": "truncated", "position": item.position}
    return {"type": "heartbeat"}


def _problem(exc: ProblemError) -> dict[str, Any]:
    return {"type": "error", "problem": exc.problem.model_dump(mode="json", exclude_none=True)}


async def serve_websocket(
    websocket: WebSocket,
    *,
    authenticate: Callable[[str | None], Awaitable[Principal]],
    stream: Callable[[Principal, int | None], PushStream],
    send_timeout: float,
) -> None:
    """Authenticate, read the subscription, then send frames until either side leaves."""
    carried = _carried_token(websocket)
    if carried is not None:
        try:
            principal = await authenticate(carried)
        except ProblemError as exc:
            await websocket.send_denial_response(problem_response(exc.problem, exc.headers))
            return
    await websocket.accept()
    try:
        subscribe = await _subscription(websocket)
        if carried is None:
            token = subscribe.token
            principal = await authenticate(None if token is None else f"Bearer {token}")
    except ProblemError as exc:
        await websocket.send_json(_problem(exc))
        await websocket.close(POLICY_VIOLATION)
        return
    except WebSocketDisconnect:
        return
    await _pump(websocket, stream(principal, subscribe.after), send_timeout)


def _carried_token(websocket: WebSocket) -> str | None:
    authorization = websocket.headers.get("authorization")
    if authorization is not None:
        return authorization
    token = websocket.query_params.get("access_token")
    return None if token is None else f"Bearer {token}"


async def _subscription(websocket: WebSocket) -> Subscribe:
    try:
        async with asyncio.timeout(FIRST_FRAME_TIMEOUT):
            text = await websocket.receive_text()
        return Subscribe.model_validate_json(text)
    except (TimeoutError, ValidationError, KeyError, json.JSONDecodeError) as exc:
        raise ProblemError(
            400,
            "bad-subscription",
            "Bad subscription",
            'send {"after": <position> | null, "token": "<bearer>"} first',
        ) from exc


async def _pump(
    websocket: WebSocket,
    frames: PushStream,
    send_timeout: float,
) -> None:
    writer = asyncio.ensure_future(_write(websocket, frames, send_timeout))
    leaving = asyncio.ensure_future(_until_closed(websocket))
    try:
        await asyncio.wait({writer, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (writer, leaving):
            task.cancel()
        for task in (writer, leaving):
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError, TimeoutError
            ):
                await task
        await frames.aclose()


async def _write(
    websocket: WebSocket,
    frames: PushStream,
    send_timeout: float,
) -> None:
    code = 1000
    try:
        async for item in frames:
            async with asyncio.timeout(send_timeout):
                await websocket.send_json(ws_frame(item))
    except SubscriptionClosedError as exc:
        code = SERVICE_RESTART if exc.reason == SHUTDOWN else TRY_AGAIN_LATER
    await websocket.close(code)


async def _until_closed(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass  # the client has nothing more to say; its frames are ignored
