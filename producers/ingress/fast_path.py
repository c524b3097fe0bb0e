"""The fast path of `POST /v1/commands/{CommandType}`: a well-formed command skips FastAPI.

FastAPI's request handling (request object, dependency solving, response model, exception
middleware) cost about as much CPU as accepting the command itself. The FastAPI route stays
the reference: it documents the operation and answers every request this path declines.

This path takes a request only when the route's own parsing would succeed, decided by the
route's rules: a JSON media type (`require_json`'s and FastAPI's), a body `json.loads`
reads and the command's model validates as FastAPI validates it, with no text the
database cannot store (`storable.unstorable`, the route's own check), and valid optional
headers. Only then does it run what the route runs, in the route's order and with the same
code (`admit`: 401, 403, 429; then the acceptor: 409, 503), and answer `202` with the bytes
the route would send. A declined request has had no side effect yet (no rate-limit hit, no
publish), so nothing is counted or published twice.
"""

from __future__ import annotations

import email.message
import json
from typing import TYPE_CHECKING
from uuid import UUID

from pydantic import TypeAdapter

from infra.auth import Scope
from producers.ingress.accept import CommandRequest
from producers.ingress.auth import admit
from producers.ingress.commands import Accepted
from producers.ingress.limits import is_json, media_type
from producers.ingress.problems import ProblemError, problem_response
from producers.ingress.storable import unstorable

if TYPE_CHECKING:
    from starlette.types import Scope as AsgiScope
    from starlette.types import Send

    from events import Catalog, CatalogEntry, Message
    from producers.ingress.accept import CommandAcceptor
    from producers.ingress.auth import Authenticator
    from producers.ingress.rate_limit import RateLimiter

_SCOPES = (Scope.COMMANDS_WRITE,)
_UUID = TypeAdapter(UUID)  # the X-Correlation-Id header's validator, as the route declares it
_MAX_KEY_LENGTH = 255  # the route's Idempotency-Key: Header(min_length=1, max_length=255)

Headers = dict[bytes, bytes]


class CommandFastPath:
    """Answers well-formed command POSTs itself; a `BodyLimitMiddleware` shortcut."""

    def __init__(
        self,
        *,
        commands: Catalog,
        authenticator: Authenticator,
        limiter: RateLimiter,
        acceptor: CommandAcceptor,
    ) -> None:
        self._entries = {
            f"/v1/commands/{entry.type}": entry
            for entry in commands.entries()
            if entry.kind == "command"
        }
        self._authenticator = authenticator
        self._limiter = limiter
        self._acceptor = acceptor

    async def __call__(self, scope: AsgiScope, body: bytes, send: Send) -> bool:
        """Answer a well-formed command POST (True), or decline it untouched (False)."""
        entry = self._entries.get(scope["path"]) if scope["method"] == "POST" else None
        if entry is None:
            return False
        headers: Headers = dict(reversed(scope["headers"]))  # the first of each, as Starlette
        request = _parse(entry, headers, body)
        if request is None:
            return False
        try:
            principal = await admit(
                self._authenticator, self._limiter, _SCOPES, _text(headers, b"authorization")
            )
            accepted = await self._acceptor.accept(
                CommandRequest(
                    entry=entry,
                    data=request.data,
                    actor=principal.actor,
                    caller=principal.caller,
                    idempotency_key=request.idempotency_key,
                    correlation_id=request.correlation_id,
                    traceparent=request.traceparent,
                )
            )
        except ProblemError as exc:
            problem = problem_response(exc.problem, exc.headers)
            await _respond(send, problem.status_code, problem.raw_headers, problem.body)
            return True
        url = f"/v1/commands/{accepted.command_id}"
        content = Accepted(command_id=accepted.command_id, status_url=url).model_dump_json()
        answer = content.encode()
        raw = [
            (b"content-length", str(len(answer)).encode()),
            (b"content-type", b"application/json"),
            (b"location", url.encode()),
        ]
        if accepted.replayed:
            raw.append((b"idempotent-replayed", b"true"))
        await _respond(send, 202, raw, answer)
        return True


class _Parsed:
    """What the route would have parsed from a well-formed request."""

    __slots__ = ("correlation_id", "data", "idempotency_key", "traceparent")

    def __init__(
        self,
        data: Message,
        idempotency_key: str | None,
        correlation_id: UUID | None,
        traceparent: str | None,
    ) -> None:
        self.data = data
        self.idempotency_key = idempotency_key
        self.correlation_id = correlation_id
        self.traceparent = traceparent


def _parse(entry: CatalogEntry, headers: Headers, body: bytes) -> _Parsed | None:
    """The route's parse of a request, or None wherever the route would refuse it."""
    content_type = _text(headers, b"content-type")
    if not content_type or not _json_media(content_type):
        return None
    key = _text(headers, b"idempotency-key")
    if key is not None and not 1 <= len(key) <= _MAX_KEY_LENGTH:
        return None
    correlation = _text(headers, b"x-correlation-id")
    try:
        # FastAPI: `json.loads` (Starlette's `request.json()`), then the body field's
        # `validate_python(..., from_attributes=True)`. Any failure is the route's to answer.
        data = entry.model.model_validate(json.loads(body), from_attributes=True)
        correlation_id = None if correlation is None else _UUID.validate_python(correlation)
    except (ValueError, RecursionError):  # JSON, UTF-8 and pydantic errors are ValueErrors
        return None
    if unstorable(data):  # text PostgreSQL cannot store: the route's 422
        return None
    return _Parsed(data, key, correlation_id, _text(headers, b"traceparent"))


def _json_media(content_type: str) -> bool:
    """Whether both `require_json` and FastAPI's body reader take this as JSON."""
    if content_type == "application/json":
        return True  # nearly every request; both take it as JSON without parsing
    if not is_json(media_type(content_type)):
        return False
    message = email.message.Message()  # FastAPI's own test, in get_request_handler
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _text(headers: Headers, name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes | memoryview
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
