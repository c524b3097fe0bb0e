"""`POST /v1/commands/{CommandType}` (one operation per catalog command) and the status URL."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Path, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.routing import Match

from infra.auth import Principal
from producers.ingress.accept import AcceptedCommand, CommandAcceptor, CommandRequest
from producers.ingress.problems import ProblemError, problem_responses
from producers.ingress.status import CommandStatusView
from producers.ingress.storable import unstorable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import Scope

    from events import Catalog, CatalogEntry
    from producers.ingress.status import StatusReader

_P = inspect.Parameter
_UUID = TypeAdapter(UUID)
_COMMANDS = "/v1/commands/"
# OpenAPI link: a 202's `command_id` is what the status URL takes (clients and fuzzers follow it).
_STATUS_LINK = {
    "status": {
        "operationId": "get_command_status",
        "parameters": {"command_id": "$response.body#/command_id"},
    }
}
_COMMAND_ERRORS = problem_responses(401, 403, 409, 413, 415, 422, 429, 503, 504)


class Accepted(BaseModel):
    """A command the broker confirmed: follow `status_url` to see what became of it."""

    command_id: UUID
    status_url: str


def _answer(accepted: AcceptedCommand, response: Response) -> Accepted:
    url = f"/v1/commands/{accepted.command_id}"
    response.headers["Location"] = url
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return Accepted(command_id=accepted.command_id, status_url=url)


def _post_endpoint(
    entry: CatalogEntry,
    acceptor: CommandAcceptor,
    writer: Callable[..., Awaitable[Principal]],
) -> Callable[..., Awaitable[Accepted]]:
    async def post_command(**params: Any) -> Accepted:  # noqa: ANN401
        principal: Principal = params["principal"]
        if errors := unstorable(params["body"]):  # NUL, lone surrogates: 422 as validation
            raise RequestValidationError(errors)
        request = CommandRequest(
            entry=entry,
            data=params["body"],
            actor=principal.actor,
            caller=principal.caller,
            idempotency_key=params["idempotency_key"],
            correlation_id=params["correlation_id"],
            traceparent=params["traceparent"],
        )
        return _answer(await acceptor.accept(request), params["response"])

    # FastAPI reads the parameters from the signature: give it the command's own model.
    # Optional headers default to None but are typed without it: a header is never null.
    post_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            _P("principal", _P.KEYWORD_ONLY, annotation=Annotated[Principal, Depends(writer)]),
            _P("body", _P.KEYWORD_ONLY, annotation=Annotated[entry.model, Body()]),
            _P("response", _P.KEYWORD_ONLY, annotation=Response),
            _P(
                "idempotency_key",
                _P.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    str,
                    Header(
                        alias="Idempotency-Key",
                        min_length=1,
                        max_length=255,
                        description="Retries with the same key get the same command id",
                    ),
                ],
            ),
            _P(
                "correlation_id",
                _P.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    UUID,
                    Header(
                        alias="X-Correlation-Id",
                        description="Follow one story across commands (default: the command id)",
                    ),
                ],
            ),
            _P(
                "traceparent",
                _P.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[str, Header(description="W3C trace context")],
            ),
        ]
    )
    return post_command


def _status_endpoint(
    statuses: StatusReader, reader: Callable[..., Awaitable[Principal]]
) -> Callable[..., Awaitable[CommandStatusView]]:
    async def command_status(**params: Any) -> CommandStatusView:  # noqa: ANN401
        return await statuses.status(params["command_id"])

    command_status.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            _P("principal", _P.KEYWORD_ONLY, annotation=Annotated[Principal, Depends(reader)]),
            _P("command_id", _P.KEYWORD_ONLY, annotation=Annotated[UUID, Path()]),
        ]
    )
    return command_status


class _CommandIdRoute(APIRoute):
    """The status URL's route: its path is known only for a command id (a UUID).

    So `/v1/commands/StartTask` is the command type's path alone (GET there is 405 with
    `Allow: POST`), and a POST to `/v1/commands/<uuid>` is 405 with `Allow: GET`.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match as a route does, but only when the last segment is a UUID."""
        match, child = super().matches(scope)
        if match is not Match.NONE:
            try:
                _UUID.validate_python(child["path_params"]["command_id"])
            except ValidationError:
                return Match.NONE, {}
        return match, child


def unknown_command(scope: Scope) -> ProblemError | None:
    """The 404 for a POST to `/v1/commands/<not a command type>` (a `MethodFallback` hook)."""
    path: str = scope["path"]
    command_type = path[len(_COMMANDS) :]
    if scope["method"] != "POST" or not path.startswith(_COMMANDS) or not command_type:
        return None
    if "/" in command_type:
        return None
    return ProblemError(
        404,
        "unknown-command-type",
        "Unknown command type",
        f"{command_type!r} is not a command hisho knows; see /openapi.json",
    )


def add_command_routes(
    router: APIRouter,
    *,
    commands: Catalog,
    acceptor: CommandAcceptor,
    statuses: StatusReader,
    writer: Callable[..., Awaitable[Principal]],
    reader: Callable[..., Awaitable[Principal]],
) -> None:
    """Add one POST operation per catalog command and the status URL (see `unknown_command`)."""
    for entry in commands.entries():
        if entry.kind != "command":
            continue
        router.add_api_route(
            f"/v1/commands/{entry.type}",
            _post_endpoint(entry, acceptor, writer),
            methods=["POST"],
            status_code=202,
            response_model=Accepted,
            operation_id=f"post_{entry.type}",
            tags=["commands"],
            summary=entry.type,
            description=(entry.model.__doc__ or "").strip(),
            responses={
                202: {
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "links": _STATUS_LINK,
                },
                **_COMMAND_ERRORS,
            },
        )
    router.add_api_route(
        "/v1/commands/{command_id}",
        _status_endpoint(statuses, reader),
        methods=["GET"],
        route_class_override=_CommandIdRoute,
        operation_id="get_command_status",
        tags=["commands"],
        response_model=CommandStatusView,
        summary="Command status",
        description="What became of a command: accepted, processed (with its events) or rejected.",
        responses=problem_responses(401, 403, 404, 422, 429, 503),
    )
