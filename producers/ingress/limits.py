"""The body limit (413): on Content-Length and on the bytes actually streamed.

The media type of command bodies (415) is a rule of `command_spec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from producers.ingress.problems import PROBLEM_BASE, Problem

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyLimitMiddleware:
    """Pure ASGI middleware: buffers the body up to `max_bytes`, refusing anything larger.

    The app then receives the whole body as one message.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body buffered, or answer 413."""
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max):
            await self._refuse(send, f"Content-Length {declared.decode(errors='replace')}")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                await self._refuse(send, f"more than {self._max} bytes streamed")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self._app(scope, replay_body(b"".join(chunks), receive), send)

    async def _refuse(self, send: Send, what: str) -> None:
        problem = Problem(
            type=PROBLEM_BASE + "payload-too-large",
            title="Payload too large",
            status=413,
            detail=f"{what}: the limit is {self._max} bytes",
        )
        body = problem.model_dump_json(exclude_none=True).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` as one message, then whatever `receive` gives."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
