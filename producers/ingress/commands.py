"""`POST /v1/commands/{CommandType}` (one operation per catalog command) and the status URL."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Path
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.routing import Match

from events import catalog
from infra.auth import Principal
from producers.ingress.command_spec import (
    COMMANDS_PATH,
    HEADERS,
    Accepted,
    AcceptedResponse,
    command_request,
)
from producers.ingress.problems import ProblemError, problem_responses
from producers.ingress.status import CommandStatusView
from producers.ingress.storable import unstorable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import Scope

    from events import Catalog, CatalogEntry
    from producers.ingress.accept import CommandAcceptor
    from producers.ingress.status import StatusReader

_P = inspect.Parameter
_UUID = TypeAdapter(UUID)
# OpenAPI link: a 202's `command_id` is what the status URL takes (clients and fuzzers follow it).
_STATUS_LINK = {
    "status": {
        "operationId": "get_command_status",
        "parameters": {"command_id": "$response.body#/command_id"},
    }
}
_SYSTEM_ONLY = frozenset(entry.type for entry in catalog.entries() if entry.system_only)
_COMMAND_ERRORS = problem_responses(401, 403, 409, 413, 415, 422, 429, 503, 504)


def _post_endpoint(
    entry: CatalogEntry,
    acceptor: CommandAcceptor,
    writer: Callable[..., Awaitable[Principal]],
) -> Callable[..., Awaitable[AcceptedResponse]]:
    async def post_command(**params: Any) -> AcceptedResponse:  # noqa: ANN401
        if errors := unstorable(params["body"]):  # NUL, lone surrogates: 422 as validation
            raise RequestValidationError(errors)
        request = command_request(entry, params["body"], params["principal"], params)
        return AcceptedResponse(await acceptor.accept(request))

    # FastAPI reads the parameters from the signature: give it the command's own model and
    # the headers as `command_spec.HEADERS` declares them.
    post_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            _P("principal", _P.KEYWORD_ONLY, annotation=Annotated[Principal, Depends(writer)]),
            _P("body", _P.KEYWORD_ONLY, annotation=Annotated[entry.model, Body()]),
            *(
                _P(rule.param, _P.KEYWORD_ONLY, default=None, annotation=rule.annotation)
                for rule in HEADERS
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
    """The 404 for a POST to `/v1/commands/<not a command type>`, 403 for a system-only one.

    A `MethodFallback` hook. System-only commands are not offered: hisho's components send
    them through the outbox.
    """
    path: str = scope["path"]
    command_type = path[len(COMMANDS_PATH) :]
    if scope["method"] != "POST" or not path.startswith(COMMANDS_PATH) or not command_type:
        return None
    if "/" in command_type:
        return None
    if command_type in _SYSTEM_ONLY:
        return ProblemError(
            403,
            "command-system-only",
            "System-only command",
            f"{command_type} is sent by hisho's own components only",
        )
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
        if not entry.public:
            continue
        router.add_api_route(
            f"{COMMANDS_PATH}{entry.type}",
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
