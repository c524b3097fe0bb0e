"""RFC 9457 problem details: every error the ingress returns is `application/problem+json`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

PROBLEM_BASE = "https://hisho.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

log = structlog.get_logger("hisho.ingress")


class FieldError(BaseModel):
    """One invalid input: where it is and what is wrong with it."""

    model_config = ConfigDict(frozen=True)

    pointer: str  # JSON pointer into the body ("/policy/approvers"), or "" for the whole body
    field: str  # "body.policy.approvers", "header.X-Correlation-Id", "query.limit", ...
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem details document."""

    model_config = ConfigDict(frozen=True)

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    checks: dict[str, str] | None = None
    # command-outcome-unknown: what to retry with (RFC 9457 extension members)
    command_id: UUID | None = None
    status_url: str | None = None
    idempotency_key: str | None = None


class ProblemError(Exception):
    """Raised anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        checks: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.problem = Problem(
            type=PROBLEM_BASE + slug,
            title=title,
            status=status,
            detail=detail,
            errors=errors,
            checks=checks,
        )
        self.headers = headers or {}


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    """Render a problem document."""
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=problem.status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def retry_after(seconds: float) -> dict[str, str]:
    """A `Retry-After` header of at least one whole second."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def unauthorized(detail: str, *, invalid: bool) -> ProblemError:
    """401: no credentials, or credentials that do not authenticate."""
    challenge = 'Bearer realm="hisho"' + (', error="invalid_token"' if invalid else "")
    return ProblemError(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": challenge}
    )


def forbidden(scope: str) -> ProblemError:
    """403: authenticated, but without the scope the operation needs."""
    return ProblemError(403, "forbidden", "Forbidden", f"this operation needs the {scope!r} scope")


def broker_unavailable(detail: str) -> ProblemError:
    """503: the broker certainly did not take the command; nothing was accepted."""
    return ProblemError(
        503, "broker-unavailable", "Broker unavailable", detail, headers=retry_after(1)
    )


def outcome_unknown(detail: str, *, command_id: UUID, idempotency_key: str) -> ProblemError:
    """504: the command may have been accepted; a retry with `idempotency_key` is safe."""
    error = ProblemError(
        504,
        "command-outcome-unknown",
        "Command outcome unknown",
        f"{detail}; the command may have been accepted: retry with this idempotency_key "
        "as Idempotency-Key (the same command id, applied once)",
        headers=retry_after(1),
    )
    error.problem = error.problem.model_copy(
        update={
            "command_id": command_id,
            "status_url": f"/v1/commands/{command_id}",
            "idempotency_key": idempotency_key,
        }
    )
    return error


def _pointer(parts: tuple[Any, ...]) -> str:
    escaped = (str(part).replace("~", "~0").replace("/", "~1") for part in parts)
    return "".join("/" + part for part in escaped)


def field_errors(errors: list[dict[str, Any]]) -> list[FieldError]:
    """Turn FastAPI/pydantic error dicts into `FieldError`s naming each field."""
    result = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        where, path = (str(loc[0]), loc[1:]) if loc else ("body", ())
        if where == "header" and path:
            path = (str(path[0]).title(), *path[1:])
        result.append(
            FieldError(
                pointer=_pointer(path) if where == "body" else "",
                field=".".join([where, *(str(part) for part in path)]),
                message=str(error.get("msg", "invalid")),
            )
        )
    return result


async def _on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.problem, exc.headers)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(list(exc.errors()))
    fields = ", ".join(error.field for error in errors)
    problem = Problem(
        type=PROBLEM_BASE + "validation",
        title="Validation failed",
        status=422,
        detail=f"invalid input: {fields}",
        errors=errors,
    )
    return problem_response(problem)


def _invalid_body() -> JSONResponse:
    error = FieldError(pointer="", field="body", message="the body is not UTF-8 encoded JSON")
    problem = Problem(
        type=PROBLEM_BASE + "validation",
        title="Validation failed",
        status=422,
        detail="invalid input: body",
        errors=[error],
    )
    return problem_response(problem)


_HTTP_SLUGS = {404: ("not-found", "Not found"), 405: ("method-not-allowed", "Method not allowed")}


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # noqa: PLR2004  (FastAPI: a body it cannot even decode)
        return _invalid_body()
    slug, title = _HTTP_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
    problem = Problem(
        type=PROBLEM_BASE + slug, title=title, status=exc.status_code, detail=str(exc.detail)
    )
    return problem_response(problem, dict(exc.headers or {}))


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    problem = Problem(type=PROBLEM_BASE + "internal", title="Internal error", status=500)
    return problem_response(problem)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error, FastAPI's own included, a problem document."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_crash)


_DESCRIPTIONS = {
    401: "Missing or invalid credentials",
    403: "The credentials lack the scope this operation needs",
    404: "Not found",
    409: "Idempotency-Key reused with a different body",
    413: "Body larger than the limit",
    415: "Body is not application/json",
    422: "Invalid input; `errors` names each field",
    429: "Rate limit exceeded; see Retry-After",
    503: "A dependency is unavailable; nothing was accepted; see Retry-After",
    504: (
        "The broker's confirm did not come: the command may have been accepted. Retry with "
        "the `idempotency_key` of the answer (same command id, applied once); see Retry-After"
    ),
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for problem statuses (media type fixed by the schema hook)."""
    return {status: {"model": Problem, "description": _DESCRIPTIONS[status]} for status in statuses}


BEARER_SCHEME = "bearer"


def finish_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare 4xx/5xx bodies as problem+json, and the bearer scheme where 401 can happen."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`hisho_…`) or, when configured, a JWT",
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            for status, response in responses.items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
                if status in {"429", "503", "504"}:
                    response["headers"] = {
                        "Retry-After": {"schema": {"type": "string"}, "required": True}
                    }
            if "401" in responses:
                operation["security"] = [{BEARER_SCHEME: []}]
    return schema
