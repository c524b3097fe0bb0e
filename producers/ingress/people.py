"""`/v1/people`: the people directory over HTTP, for an admin or the person themself.

`POST /v1/people` adds a person; `GET /v1/people` lists them (admin); `GET`, `PATCH` and
`DELETE /v1/people/{principal_id}` read, change and erase one. A principal id holds ':' and
often '/' (`user:https://issuer/sub`), so the path takes the rest of the URL. Each change is
written with its event in one transaction (`infra.db.people`); a refused request (401, 403,
404, 409, 415, 422) changes nothing. Unlike commands, these are answered synchronously.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol
from urllib.parse import quote

from fastapi import Body, Depends, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from events.fields import PRINCIPAL_PATTERN
from infra.auth import Principal, Scope
from infra.message_context import MessageContext
from infra.people import NewPerson, Person, PersonChanges, PersonExistsError, PersonNotFoundError
from producers.ingress.endpoints import endpoint as _endpoint
from producers.ingress.endpoints import param as _param
from producers.ingress.problems import Problem, ProblemError, problem_responses
from producers.ingress.status import database_unavailable
from producers.ingress.storable import unstorable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastapi import APIRouter

PEOPLE_PATH = "/v1/people"
_ID = Annotated[
    str,
    Path(
        pattern=PRINCIPAL_PATTERN,
        max_length=300,
        description="The principal id, e.g. `key:<key id>` or `user:<issuer>/<sub>`",
    ),
]
# A page's cursor is the last principal id of the page before (any such id is a cursor).
_CURSOR = Annotated[
    str,
    Query(pattern=PRINCIPAL_PATTERN, max_length=300, description="`next_cursor` of the last page"),
]
_LIMIT = Annotated[int, Query(ge=1, le=200)]
# OpenAPI links: the 201's principal id is what the one-person operations take.
_LINKS = {
    verb: {
        "operationId": f"{verb}_person",
        "parameters": {"principal_id": "$response.body#/principal_id"},
    }
    for verb in ("get", "update", "erase")
}


class PeopleStore(Protocol):
    """The directory as the routes use it (`infra.db.people.SqlPeople`)."""

    async def get(self, principal_id: str) -> Person | None:
        """The person with this principal id, or None."""
        ...

    async def page(self, *, after: str | None, limit: int) -> tuple[list[Person], str | None]:
        """Up to `limit` people after `after` (by principal id) and the next page's cursor."""
        ...

    async def register(self, person: NewPerson, *, context: MessageContext) -> Person:
        """Add a person (`PersonExistsError` if there is one)."""
        ...

    async def update(
        self, principal_id: str, changes: PersonChanges, *, context: MessageContext
    ) -> Person:
        """Change a person (`PersonNotFoundError` if there is none)."""
        ...

    async def erase(self, principal_id: str, *, context: MessageContext) -> None:
        """Delete a person (`PersonNotFoundError` if there is none)."""


class PeoplePage(BaseModel):
    """One page of the directory, by principal id; pass `next_cursor` as `cursor` for more."""

    items: list[Person]
    next_cursor: str | None


def _require(caller: Principal, principal_id: str | None = None) -> None:
    """403 unless the caller is an admin or (when `principal_id` is given) that principal."""
    if caller.allows(Scope.ADMIN) or caller.actor.principal == principal_id:
        return
    whose = "" if principal_id is None else ", or by the person themself"
    raise ProblemError(
        403, "forbidden", "Forbidden", f"this operation may be done by an admin{whose}"
    )


def _not_found(principal_id: str) -> ProblemError:
    return ProblemError(404, "not-found", "Not found", f"no person {principal_id!r}")


def _storable(body: BaseModel) -> None:
    if errors := unstorable(body):  # NUL, lone surrogates: 422 as validation
        raise RequestValidationError(errors)


class _Routes:
    """The endpoints, on one store."""

    def __init__(self, people: PeopleStore) -> None:
        self.people = people

    async def create(self, caller: Principal, body: NewPerson) -> JSONResponse:
        _storable(body)
        _require(caller, body.principal_id)
        try:
            person = await self.people.register(body, context=MessageContext.start(caller.actor))
        except PersonExistsError:
            raise ProblemError(
                409, "person-exists", "Person exists", f"{body.principal_id!r} is in the directory"
            ) from None
        except Exception as exc:
            raise database_unavailable(exc) from exc
        location = f"{PEOPLE_PATH}/{quote(person.principal_id, safe=':/@')}"
        content = person.model_dump(mode="json")
        return JSONResponse(content, status_code=201, headers={"Location": location})

    async def list_page(self, caller: Principal, cursor: str | None, limit: int) -> PeoplePage:
        _require(caller)
        try:
            items, next_cursor = await self.people.page(after=cursor, limit=limit)
        except Exception as exc:
            raise database_unavailable(exc) from exc
        return PeoplePage(items=items, next_cursor=next_cursor)

    async def get(self, caller: Principal, principal_id: str) -> Person:
        _require(caller, principal_id)
        try:
            person = await self.people.get(principal_id)
        except Exception as exc:
            raise database_unavailable(exc) from exc
        if person is None:
            raise _not_found(principal_id)
        return person

    async def update(self, caller: Principal, principal_id: str, body: PersonChanges) -> Person:
        _storable(body)
        _require(caller, principal_id)
        context = MessageContext.start(caller.actor)
        try:
            return await self.people.update(principal_id, body, context=context)
        except PersonNotFoundError:
            raise _not_found(principal_id) from None
        except Exception as exc:
            raise database_unavailable(exc) from exc

    async def erase(self, caller: Principal, principal_id: str) -> Response:
        _require(caller, principal_id)
        try:
            await self.people.erase(principal_id, context=MessageContext.start(caller.actor))
        except PersonNotFoundError:
            raise _not_found(principal_id) from None
        except Exception as exc:
            raise database_unavailable(exc) from exc
        return Response(status_code=204)


_REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "Neither an admin nor the person themself"},
    404: {"model": Problem, "description": "No person with this principal id"},
}


def add_people_routes(
    router: APIRouter,
    *,
    people: PeopleStore,
    reader: Callable[..., Awaitable[Principal]],
    writer: Callable[..., Awaitable[Principal]],
) -> None:
    """Add the directory's operations; `reader`/`writer` guard them (any authenticated caller).

    Who may do what (admin, or the person themself) is decided here, per request.
    """
    routes = _Routes(people)
    read = Annotated[Principal, Depends(reader)]
    write = Annotated[Principal, Depends(writer)]
    common = problem_responses(401, 422, 429, 503)
    one: dict[int | str, dict[str, Any]] = {**common, **_REFUSALS}
    person = f"{PEOPLE_PATH}/{{principal_id:path}}"
    router.add_api_route(
        PEOPLE_PATH,
        _endpoint(
            routes.create, _param("caller", write), _param("body", Annotated[NewPerson, Body()])
        ),
        methods=["POST"],
        status_code=201,
        response_model=Person,
        operation_id="create_person",
        tags=["people"],
        summary="Add a person to the directory",
        description="An admin adds anyone; any other caller only themself.",
        responses={
            201: {"headers": {"Location": {"schema": {"type": "string"}}}, "links": _LINKS},
            **common,
            **problem_responses(413, 415),
            403: _REFUSALS[403],
            409: {"model": Problem, "description": "A person with this principal id exists"},
        },
    )
    router.add_api_route(
        PEOPLE_PATH,
        _endpoint(
            routes.list_page,
            _param("caller", read),
            _param("cursor", _CURSOR, None),
            _param("limit", _LIMIT, 50),
        ),
        methods=["GET"],
        response_model=PeoplePage,
        operation_id="list_people",
        tags=["people"],
        summary="List the directory (admin)",
        responses={**common, 403: {"model": Problem, "description": "Not an admin"}},
    )
    router.add_api_route(
        person,
        _endpoint(routes.get, _param("caller", read), _param("principal_id", _ID)),
        methods=["GET"],
        response_model=Person,
        operation_id="get_person",
        tags=["people"],
        summary="Get one person",
        responses=one,
    )
    router.add_api_route(
        person,
        _endpoint(
            routes.update,
            _param("caller", write),
            _param("principal_id", _ID),
            _param("body", Annotated[PersonChanges, Body()]),
        ),
        methods=["PATCH"],
        response_model=Person,
        operation_id="update_person",
        tags=["people"],
        summary="Change a person",
        description=(
            "Fields given replace the stored ones; a null `email` or `chat_webhook_url` "
            "removes it; `preferences` is replaced as a whole. The event records the names "
            "of the changed fields only."
        ),
        responses={**one, **problem_responses(413, 415)},
    )
    router.add_api_route(
        person,
        _endpoint(routes.erase, _param("caller", read), _param("principal_id", _ID)),
        methods=["DELETE"],
        status_code=204,
        response_class=Response,
        operation_id="erase_person",
        tags=["people"],
        summary="Erase a person",
        description="Deletes the person's entry; the event log keeps their id only.",
        responses=one,
    )
