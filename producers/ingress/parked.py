"""`/v1/parked`: the parked-message console over HTTP (scope `admin`), on `infra.parked`.

`GET /v1/parked` lists parked messages (filters, cursor pages, counts by error type);
`GET /v1/parked/{message_id}` shows one with its headers and body (the envelope, decoded,
when it decodes); `POST /v1/parked/{message_id}/redrive` sends one back to its consumer;
`POST /v1/parked/redrive` re-drives by filter at a bounded rate; `DELETE
/v1/parked/{message_id}` discards one (audited). Re-drives publish through the process's
confirmed publisher. Bad input is a 422 and changes nothing; an unknown id 404; a message no
longer parked (or parked by several consumers, without `consumer`) 409.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Body, Depends, Path, Query
from fastapi.responses import Response
from starlette.convertors import Convertor, register_url_convertor

from infra.amqp import ConfirmUnknownError, NotPublishedError
from infra.auth import Principal
from infra.message_context import MessageContext
from infra.parked import (
    BulkRedrive,
    NotParkedError,
    ParkedConsole,
    ParkedInputError,
    ParkedNotFoundError,
)
from producers.ingress.endpoints import endpoint as _endpoint
from producers.ingress.endpoints import param as _param
from producers.ingress.parked_views import (
    AGE_PATTERN,
    CONSUMER_PATTERN,
    ERROR_PATTERN,
    BulkRedriveRequest,
    ParkedDetail,
    ParkedList,
    ParkedSummary,
    RedriveResult,
    detail,
    group_view,
    summary,
)
from producers.ingress.problems import Problem, ProblemError, broker_unavailable, problem_responses
from producers.ingress.status import database_unavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import APIRouter
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.app import App

PARKED_PATH = "/v1/parked"
MAX_BULK_SECONDS = 60.0  # a bulk re-drive over HTTP finishes within this (limit / rate)
_ID = Annotated[
    str,
    Path(
        pattern=r"^[!-~]{1,200}$",
        description="The parked message's id (its message id)",
    ),
]


class _ParkedId(Convertor[str]):
    """A path segment naming a parked message; `redrive` is the bulk operation's, not an id."""

    regex = "(?!redrive(?:$|/$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("parked_id", _ParkedId())
_CONSUMER = Annotated[
    str | None,
    Query(pattern=CONSUMER_PATTERN, description="Only this consumer's parked messages"),
]
_ERROR = Annotated[
    str | None,
    Query(pattern=ERROR_PATTERN, description="Only this exception type"),
]
_AGE = "A duration: 30s, 15m, 2h, 7d, 1w"
_OLDER = Annotated[
    str | None, Query(pattern=AGE_PATTERN, description=f"Parked before now - {_AGE}")
]
_YOUNGER = Annotated[
    str | None, Query(pattern=AGE_PATTERN, description=f"Parked after now - {_AGE}")
]
_STATE = Annotated[
    Literal["parked", "redriven", "discarded", "any"],
    Query(description="Which records; `any` for every state"),
]
_CURSOR = Annotated[
    str | None,
    Query(pattern=r"^[A-Za-z0-9_-]{1,2000}$", description="`next_cursor` of the last page"),
]
_LIMIT = Annotated[int, Query(ge=1, le=200)]
_DRY = Annotated[bool, Query(description="Say what would happen; change nothing")]
_REASON = Annotated[
    str, Query(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$", description="Why (audited)")
]


def parked_console(resources: App, engine: AsyncEngine) -> ParkedConsole:
    """The console on the process's engine, connection and confirmed publisher."""
    from infra.db.parked import SqlParkedMessages  # noqa: PLC0415  (built once, at start)
    from infra.parked_broker import AmqpParkedBroker  # noqa: PLC0415

    broker = AmqpParkedBroker(
        resources.amqp.connected,
        resources.publisher,
        confirm_timeout=resources.settings.ingress_confirm_timeout,
    )
    return ParkedConsole(
        SqlParkedMessages(engine),
        broker,
        consumers=resources.consumers.names(),
        clock=resources.clock,
    )


async def _answer(work: Awaitable[Any]) -> Any:  # noqa: ANN401
    """Await `work`; the console's refusals and unavailable servers as problems."""
    try:
        return await work
    except ParkedInputError as exc:
        raise ProblemError(422, "invalid-parked-filter", "Invalid input", str(exc)) from None
    except ParkedNotFoundError as exc:
        raise ProblemError(404, "not-found", "Not found", str(exc)) from None
    except NotParkedError as exc:
        raise ProblemError(409, "not-parked", "Not parked", str(exc)) from None
    except (NotPublishedError, ConfirmUnknownError, TimeoutError) as exc:
        raise broker_unavailable(f"the re-drive was not confirmed: {exc}") from exc
    except ProblemError:
        raise
    except Exception as exc:
        raise database_unavailable(exc) from exc


def _result(done: BulkRedrive) -> RedriveResult:
    return RedriveResult(
        dry_run=done.dry_run,
        selected=[record.message_id for record in done.selected],
        sent=done.sent,
        already_applied=done.already_applied,
    )


class _Routes:
    """The endpoints, on one console (None: not configured, 503)."""

    def __init__(self, console: ParkedConsole | None) -> None:
        self._console = console

    @property
    def console(self) -> ParkedConsole:
        if self._console is None:
            raise ProblemError(503, "parked-unavailable", "Console unavailable", "not configured")
        return self._console

    async def list_page(self, caller: Principal, **query: Any) -> ParkedList:  # noqa: ANN401, ARG002
        cursor, limit, state = query.pop("cursor"), query.pop("limit"), query.pop("state")
        which = await _answer(self.console.filter(state=None if state == "any" else state, **query))
        page = await _answer(self.console.list(which, cursor=cursor, limit=limit))
        return ParkedList(
            items=[ParkedSummary(**summary(r)) for r in page.items],
            next_cursor=page.next_cursor,
            groups=[group_view(g) for g in page.groups],
        )

    async def get(self, caller: Principal, message_id: str, consumer: str | None) -> ParkedDetail:  # noqa: ARG002
        return detail(await _answer(self.console.show(message_id, consumer=consumer)))

    async def redrive(
        self, caller: Principal, message_id: str, consumer: str | None, dry_run: bool
    ) -> RedriveResult:
        by = caller.actor.principal
        work = self.console.redrive(message_id, by=by, consumer=consumer, dry_run=dry_run)
        return _result(await _answer(work))

    async def redrive_all(self, caller: Principal, body: BulkRedriveRequest) -> RedriveResult:
        if body.limit / body.rate > MAX_BULK_SECONDS:
            detail = (
                f"limit / rate must be at most {MAX_BULK_SECONDS:g} s: lower limit or raise rate"
            )
            raise ProblemError(422, "invalid-parked-filter", "Invalid input", detail)
        which = await _answer(
            self.console.filter(
                consumer=body.consumer,
                error_type=body.error_type,
                older_than=body.older_than,
                younger_than=body.younger_than,
            )
        )
        done = await _answer(
            self.console.redrive_all(
                which,
                by=caller.actor.principal,
                rate=body.rate,
                limit=body.limit,
                dry_run=body.dry_run,
            )
        )
        return _result(done)

    async def discard(
        self, caller: Principal, message_id: str, consumer: str | None, reason: str
    ) -> Response:
        context = MessageContext.start(caller.actor)
        work = self.console.discard(message_id, reason=reason, context=context, consumer=consumer)
        await _answer(work)
        return Response(status_code=204)


def add_parked_routes(
    router: APIRouter,
    *,
    console: ParkedConsole | None,
    reader: Callable[..., Awaitable[Principal]],
    writer: Callable[..., Awaitable[Principal]],
) -> None:
    """Add the console's operations, guarded by `reader` / `writer` (scope `admin`)."""
    routes = _Routes(console)
    read = _param("caller", Annotated[Principal, Depends(reader)])
    write = _param("caller", Annotated[Principal, Depends(writer)])
    common = problem_responses(401, 403, 422, 429, 503)
    unknown: dict[int | str, dict[str, Any]] = {
        404: {"model": Problem, "description": "No parked message with this id"}
    }
    gone: dict[int | str, dict[str, Any]] = {
        409: {"model": Problem, "description": "No longer parked, or name the consumer"}
    }
    one = f"{PARKED_PATH}/{{message_id:parked_id}}"
    consumer, message = _param("consumer", _CONSUMER, None), _param("message_id", _ID)
    router.add_api_route(
        PARKED_PATH,
        _endpoint(
            routes.list_page,
            read,
            consumer,
            _param("error_type", _ERROR, None),
            _param("older_than", _OLDER, None),
            _param("younger_than", _YOUNGER, None),
            _param("state", _STATE, "parked"),
            _param("cursor", _CURSOR, None),
            _param("limit", _LIMIT, 50),
        ),
        methods=["GET"],
        response_model=ParkedList,
        operation_id="list_parked",
        tags=["parked"],
        summary="List parked messages, grouped by error type",
        responses=common,
    )
    router.add_api_route(
        f"{PARKED_PATH}/redrive",
        _endpoint(routes.redrive_all, write, _param("body", Annotated[BulkRedriveRequest, Body()])),
        methods=["POST"],
        response_model=RedriveResult,
        operation_id="redrive_parked",
        tags=["parked"],
        summary="Re-drive the parked messages a filter selects, at a bounded rate",
        description=f"Answers when done: `limit / rate` is at most {MAX_BULK_SECONDS:g} s.",
        responses={**common, **problem_responses(413, 415)},
    )
    router.add_api_route(
        one,
        _endpoint(routes.get, read, message, consumer),
        methods=["GET"],
        response_model=ParkedDetail,
        operation_id="get_parked",
        tags=["parked"],
        summary="Show one parked message with its headers and body",
        responses={**common, **unknown, **gone},
    )
    router.add_api_route(
        f"{one}/redrive",
        _endpoint(routes.redrive, read, message, consumer, _param("dry_run", _DRY, default=False)),
        methods=["POST"],
        response_model=RedriveResult,
        operation_id="redrive_one_parked",
        tags=["parked"],
        summary="Send one parked message back to its consumer (same id)",
        responses={**common, **unknown, **gone},
    )
    router.add_api_route(
        one,
        _endpoint(routes.discard, read, message, consumer, _param("reason", _REASON, "")),
        methods=["DELETE"],
        status_code=204,
        response_class=Response,
        operation_id="discard_parked",
        tags=["parked"],
        summary="Discard one parked message (recorded in the audit log)",
        responses={**common, **unknown, **gone},
    )
