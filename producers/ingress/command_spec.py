"""What a command POST is, for the FastAPI route and the fast path alike.

One place for each rule of `POST /v1/commands/{CommandType}`, so that the two ways of
answering it cannot drift apart:

* header rules (`HEADERS`): each optional header's name and constraints, as one annotated
  type. The route declares its parameters with it; `parse_headers` validates raw headers
  with a `TypeAdapter` of the same type.
* media rule: `require_json` is the route's 415; `takes_json` says whether both it and
  FastAPI's body reader take a Content-Type as JSON.
* request build: `command_request` turns a validated body, the principal and the header
  values into the acceptor's `CommandRequest`.
* 202 answer: `AcceptedResponse` holds the answer's bytes and headers; the route returns it,
  the fast path sends it.
"""

from __future__ import annotations

import email.message
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import Header
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.responses import Response

from producers.ingress.accept import CommandRequest
from producers.ingress.problems import ProblemError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fastapi import Request

    from events import CatalogEntry, Message
    from infra.auth import Principal
    from producers.ingress.accept import AcceptedCommand

COMMANDS_PATH = "/v1/commands/"
_JSON_SUFFIX = re.compile(r"^application/[a-z0-9.+-]+\+json$")


@dataclass(frozen=True, slots=True)
class HeaderRule:
    """One optional header of a command POST: its parameter, wire name and annotated type."""

    param: str  # the route's parameter (and `CommandRequest`'s field)
    name: bytes  # the header's name as ASGI gives it (lower case)
    annotation: Any  # Annotated[type, Header(...)]: the route's declaration
    adapter: TypeAdapter[Any]  # validates a raw value as the route does

    @classmethod
    def of(cls, param: str, annotation: Any) -> HeaderRule:  # noqa: ANN401  (an Annotated type)
        """The rule of `param`, declared by `annotation` (its Header's alias is the name)."""
        alias = annotation.__metadata__[0].alias or param
        return cls(param, alias.lower().encode(), annotation, TypeAdapter(annotation))


# Optional headers default to None but are typed without it: a header is never null.
HEADERS = (
    HeaderRule.of(
        "idempotency_key",
        Annotated[
            str,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=255,
                description="Retries with the same key get the same command id",
            ),
        ],
    ),
    HeaderRule.of(
        "correlation_id",
        Annotated[
            UUID,
            Header(
                alias="X-Correlation-Id",
                description="Follow one story across commands (default: the command id)",
            ),
        ],
    ),
    HeaderRule.of("traceparent", Annotated[str, Header(description="W3C trace context")]),
)


def parse_headers(headers: Mapping[bytes, bytes]) -> dict[str, Any] | None:
    """Every header rule's value (None when absent), or None if the route would refuse one."""
    values: dict[str, Any] = {}
    for rule in HEADERS:
        raw = headers.get(rule.name)
        if raw is None:
            values[rule.param] = None
            continue
        try:
            values[rule.param] = rule.adapter.validate_python(raw.decode("latin-1"))
        except ValidationError:
            return None
    return values


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


def takes_json(content_type: str) -> bool:
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


def command_request(
    entry: CatalogEntry, data: Message, principal: Principal, headers: Mapping[str, Any]
) -> CommandRequest:
    """The acceptor's request: the validated body, who sent it, and the header values."""
    return CommandRequest(
        entry=entry,
        data=data,
        actor=principal.actor,
        caller=principal.caller,
        idempotency_key=headers["idempotency_key"],
        correlation_id=headers["correlation_id"],
        traceparent=headers["traceparent"],
    )


class Accepted(BaseModel):
    """A command the broker confirmed: follow `status_url` to see what became of it."""

    command_id: UUID
    status_url: str


class AcceptedResponse(Response):
    """The `202` of an accepted command: JSON `Accepted`, `Location`, `Idempotent-Replayed`."""

    media_type = "application/json"

    def __init__(self, accepted: AcceptedCommand) -> None:
        url = f"{COMMANDS_PATH}{accepted.command_id}"
        body = Accepted(command_id=accepted.command_id, status_url=url).model_dump_json()
        self.status_code = 202
        self.body = body.encode()
        self.background = None
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
            (b"location", url.encode()),
        ]
        if accepted.replayed:
            self.raw_headers.append((b"idempotent-replayed", b"true"))
