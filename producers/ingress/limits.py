"""Request-shape checks: the body limit (413) and the media type of command bodies (415).

The limit applies to Content-Length and to the bytes actually streamed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from producers.ingress.problems import PROBLEM_BASE, Problem, ProblemError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    # Answers a request with its buffered body itself (True), or leaves it to the app (False).
    Shortcut = Callable[[Scope, bytes, Send], Awaitable[bool]]

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})
_JSON_SUFFIX = re.compile(r"^application/[a-z0-9.+-]+\+json$")


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header value, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    """Whether a media type (from `media_type`) is JSON: application/json or */*+json."""
    return media == "application/json" or _JSON_SUFFIX.match(media) is not None


async def require_json(request: Request) -> None:
    """Refuse a body that is not JSON (415); an empty body is left to validation (422)."""
    media = media_type(request.headers.get("content-type", ""))
    if is_json(media):
        return
    if not media and not await request.body():
        return
    raise ProblemError(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"send the command as application/json, not {media or 'an unlabelled body'!r}",
    )


class BodyLimitMiddleware:
    """Pure ASGI middleware: buffers the body up to `max_bytes`, refusing anything larger.

    A `shortcut` may then answer the buffered request itself; what it declines goes on to
    the app.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, shortcut: Shortcut | None = None) -> None:
        self._app = app
        self._max = max_bytes
        self._shortcut = shortcut

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
        body = b"".join(chunks)
        if self._shortcut is not None and await self._shortcut(scope, body, send):
            return
        await self._app(scope, _replay(body, receive), send)

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


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
