"""The fast path of `POST /v1/commands/{CommandType}`: a well-formed command skips FastAPI.

FastAPI's request handling (request object, dependency solving, response model, exception
middleware) cost about as much CPU as accepting the command itself. The FastAPI route stays
the reference: it documents the operation and answers every request this path declines.

`CommandFastPath` is a pure ASGI middleware wrapping the app, inside `BodyLimitMiddleware`
(which has buffered the body). It takes a request only when the route's own parsing would
succeed, by the rules both share (`command_spec`): a JSON media type (`takes_json`), valid
optional headers (`parse_headers`), a body `json.loads` reads and the command's model
validates as FastAPI validates it, with no text the database cannot store
(`storable.unstorable`, the route's own check). Only then does it run what the route runs,
in the route's order and with the same code (`admit`: 401, 403, 429; then the acceptor:
409, 503, 504), and send the route's answer (`AcceptedResponse`, or the problem). A declined
request has had no side effect yet (no rate-limit hit, no publish), so nothing is counted or
published twice; it goes on to the app with its body.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from infra.auth import Scope
from producers.ingress.auth import admit
from producers.ingress.command_spec import (
    COMMANDS_PATH,
    AcceptedResponse,
    command_request,
    parse_headers,
    takes_json,
)
from producers.ingress.limits import replay_body
from producers.ingress.problems import ProblemError, problem_response
from producers.ingress.storable import unstorable

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Send
    from starlette.types import Scope as AsgiScope

    from events import Catalog, CatalogEntry, Message
    from producers.ingress.accept import CommandAcceptor
    from producers.ingress.auth import Authenticator
    from producers.ingress.rate_limit import RateLimiter

_SCOPES = (Scope.COMMANDS_WRITE,)

Headers = dict[bytes, bytes]


class CommandFastPath:
    """Pure ASGI middleware: answers well-formed command POSTs, passes the rest to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        commands: Catalog,
        authenticator: Authenticator,
        limiter: RateLimiter,
        acceptor: CommandAcceptor,
    ) -> None:
        self._app = app
        self._entries = {
            f"{COMMANDS_PATH}{entry.type}": entry for entry in commands.entries() if entry.public
        }
        self._authenticator = authenticator
        self._limiter = limiter
        self._acceptor = acceptor

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        """Answer a well-formed command POST, or pass the request on with its body."""
        entry = (
            self._entries.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if entry is None:
            await self._app(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:
            return  # the client went away
        if not await self._answer(entry, scope, body, send):
            await self._app(scope, replay_body(body, receive), send)

    async def _answer(self, entry: CatalogEntry, scope: AsgiScope, body: bytes, send: Send) -> bool:
        """Answer the request (True), or decline it untouched (False)."""
        headers: Headers = dict(reversed(scope["headers"]))  # the first of each, as Starlette
        parsed = _parse(entry, headers, body)
        if parsed is None:
            return False
        data, values = parsed
        try:
            principal = await admit(
                self._authenticator, self._limiter, _SCOPES, _text(headers, b"authorization")
            )
            accepted = await self._acceptor.accept(command_request(entry, data, principal, values))
        except ProblemError as exc:
            problem = problem_response(exc.problem, exc.headers)
            await _respond(send, problem.status_code, problem.raw_headers, problem.body)
            return True
        answer = AcceptedResponse(accepted)
        await _respond(send, answer.status_code, answer.raw_headers, answer.body)
        return True


async def _body(receive: Receive) -> bytes | None:
    """The whole request body (one message behind `BodyLimitMiddleware`), or None."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parse(
    entry: CatalogEntry, headers: Headers, body: bytes
) -> tuple[Message, dict[str, Any]] | None:
    """The route's parse of a request, or None wherever the route would refuse it."""
    content_type = _text(headers, b"content-type")
    if not content_type or not takes_json(content_type):
        return None
    values = parse_headers(headers)
    if values is None:
        return None
    try:
        # FastAPI: `json.loads` (Starlette's `request.json()`), then the body field's
        # `validate_python(..., from_attributes=True)`. Any failure is the route's to answer.
        data = entry.model.model_validate(json.loads(body), from_attributes=True)
    except (ValueError, RecursionError):  # JSON, UTF-8 and pydantic errors are ValueErrors
        return None
    if unstorable(data):  # text PostgreSQL cannot store: the route's 422
        return None
    return data, values


def _text(headers: Headers, name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes | memoryview
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
