"""`GET /v1/{personas,projects,plans,workflows,tasks}` and `/{id}`: current aggregate state."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, select, tuple_

from infra.auth import Principal
from infra.db.state_tables import aggregate_state
from producers.ingress.problems import FieldError, ProblemError, problem_responses
from producers.ingress.status import DB_TIMEOUT, database_unavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class Resource:
    """A collection in the URL, the aggregate type it lists, and the state fields it filters."""

    path: str
    aggregate_type: str
    filters: tuple[str, ...]


# `aggregate_type` is the domain's `Aggregate.aggregate_type` (also the first part of its
# events' routing keys); filters compare a top-level field of the state JSON as text.
RESOURCES = (
    Resource("personas", "persona", ("status",)),
    Resource("projects", "project", ()),
    Resource("plans", "plan", ("project_id", "status")),
    Resource("workflows", "workflow", ("project_id", "plan_id", "status")),
    Resource("tasks", "task", ("workflow_id", "project_id", "status")),
)


# Every string this pattern admits is a cursor (so a schema-valid request is never refused):
# microseconds since the epoch (up to the year 5138) and the id, as hex.
CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9a-f]{32}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class StateDocument(BaseModel):
    """An aggregate's current state: its own fields, plus `id` and `version`."""

    model_config = ConfigDict(extra="allow")

    id: UUID
    version: int


class StatePage(BaseModel):
    """One page of a list, oldest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[StateDocument]
    next_cursor: str | None


def _document(row: Any) -> StateDocument:  # noqa: ANN401  (a SQLAlchemy row)
    state = row.state if isinstance(row.state, dict) else {}
    return StateDocument.model_validate({**state, "id": row.aggregate_id, "version": row.version})


def encode_cursor(created_at: datetime, aggregate_id: UUID) -> str:
    """Return the cursor after (created_at, id): opaque to clients, compact to parse."""
    delta = created_at - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}.{aggregate_id.hex}"


def _digits(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Return (created_at, id) of a cursor, or raise a 422 problem naming `query.cursor`."""
    micros, _, hex_id = cursor.partition(".")
    try:
        return _EPOCH + timedelta(microseconds=_digits(micros)), UUID(hex=hex_id)
    except (ValueError, OverflowError) as exc:
        raise ProblemError(
            422,
            "validation",
            "Validation failed",
            "invalid input: query.cursor",
            errors=[FieldError(pointer="", field="query.cursor", message="not a valid cursor")],
        ) from exc


class StateReader:
    """Reads `aggregate_state` rows."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _rows(self, query: Select[Any]) -> list[Any]:
        try:
            async with asyncio.timeout(DB_TIMEOUT), self._engine.connect() as conn:
                return list(await conn.execute(query))
        except Exception as exc:
            raise database_unavailable(exc) from exc

    async def one(self, aggregate_type: str, aggregate_id: UUID) -> StateDocument:
        """Return one aggregate's state, or raise a 404 problem."""
        query = select(aggregate_state).where(
            aggregate_state.c.aggregate_type == aggregate_type,
            aggregate_state.c.aggregate_id == aggregate_id,
        )
        rows = await self._rows(query)
        if not rows:
            raise ProblemError(404, "not-found", "Not found", f"no {aggregate_type} {aggregate_id}")
        return _document(rows[0])

    async def page(
        self, aggregate_type: str, filters: dict[str, str], cursor: str | None, limit: int
    ) -> StatePage:
        """Return up to `limit` aggregates after `cursor` matching every filter."""
        table = aggregate_state.c
        query = select(aggregate_state).where(table.aggregate_type == aggregate_type)
        for field, value in filters.items():
            query = query.where(table.state[field].astext == value)
        if cursor is not None:
            after = decode_cursor(cursor)
            query = query.where(tuple_(table.created_at, table.aggregate_id) > after)
        query = query.order_by(table.created_at, table.aggregate_id).limit(limit + 1)
        rows = await self._rows(query)
        more, rows = len(rows) > limit, rows[:limit]
        last = rows[-1] if more else None
        return StatePage(
            items=[_document(row) for row in rows],
            next_cursor=encode_cursor(last.created_at, last.aggregate_id) if last else None,
        )


_P = inspect.Parameter


def _list_endpoint(
    resource: Resource, states: StateReader, reader: Callable[..., Awaitable[Principal]]
) -> Callable[..., Awaitable[StatePage]]:
    async def list_state(**params: Any) -> StatePage:  # noqa: ANN401
        chosen = {name: params[name] for name in resource.filters if params[name] is not None}
        return await states.page(resource.aggregate_type, chosen, params["cursor"], params["limit"])

    filters = [
        _P(
            name,
            _P.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str, Query(max_length=200)],
        )
        for name in resource.filters
    ]
    # FastAPI reads parameters from the signature; closures need real objects, not strings.
    list_state.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            _P("principal", _P.KEYWORD_ONLY, annotation=Annotated[Principal, Depends(reader)]),
            _P(
                "cursor",
                _P.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    str,
                    Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the page before"),
                ],
            ),
            _P(
                "limit",
                _P.KEYWORD_ONLY,
                default=50,
                annotation=Annotated[int, Query(ge=1, le=200)],
            ),
            *filters,
        ]
    )
    return list_state


def _get_endpoint(
    resource: Resource, states: StateReader, reader: Callable[..., Awaitable[Principal]]
) -> Callable[..., Awaitable[StateDocument]]:
    async def get_state(**params: Any) -> StateDocument:  # noqa: ANN401
        return await states.one(resource.aggregate_type, params["aggregate_id"])

    get_state.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            _P("principal", _P.KEYWORD_ONLY, annotation=Annotated[Principal, Depends(reader)]),
            _P("aggregate_id", _P.KEYWORD_ONLY, annotation=Annotated[UUID, Path()]),
        ]
    )
    return get_state


def add_state_routes(
    router: APIRouter, *, states: StateReader, reader: Callable[..., Awaitable[Principal]]
) -> None:
    """Add list and get endpoints for every aggregate collection."""
    for resource in RESOURCES:
        singular = resource.aggregate_type
        router.add_api_route(
            f"/v1/{resource.path}",
            _list_endpoint(resource, states, reader),
            methods=["GET"],
            response_model=StatePage,
            operation_id=f"list_{resource.path}",
            tags=["state"],
            summary=f"List {resource.path}",
            responses=problem_responses(401, 403, 422, 429, 503),
        )
        router.add_api_route(
            f"/v1/{resource.path}/{{aggregate_id}}",
            _get_endpoint(resource, states, reader),
            methods=["GET"],
            response_model=StateDocument,
            operation_id=f"get_{singular}",
            tags=["state"],
            summary=f"Get one {singular}",
            responses=problem_responses(401, 403, 404, 422, 429, 503),
        )
