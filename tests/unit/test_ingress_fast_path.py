"""The command POST's fast path answers exactly as the FastAPI route would, side effects included.

Every case runs twice, on two apps built alike: one as built (fast path on), one without the
`CommandFastPath` middleware (every request goes through the FastAPI route). Their answers and
what they published must be the same, once ids, timestamps and span ids are normalised.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.middleware import Middleware

from producers.ingress.fast_path import CommandFastPath
from producers.ingress.ports import PublishOutcomeUnknownError
from tests.ingress_fakes import READER, WRITER, FakedIngress
from tests.ingress_support import ingress_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

    from producers.ingress.ports import OutgoingCommand

PLAN = "11111111-2222-4333-8444-555555555555"
LOST = "99999999-2222-4333-8444-555555555555"  # a plan id whose first confirm is lost
TRACE = "0af7651916cd43dd8448eb211c80319c"
JSON = {"Authorization": f"Bearer {WRITER}", "Content-Type": "application/json"}
PROJECT = {
    "project_id": PLAN,
    "name": "p",
    "policy": {"approvers": ["key:a"], "required_approvals": 1},
}

# (name, command type, body, headers); run in this order, so later cases see earlier state.
CASES: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("valid", "SubmitPlan", b'{"plan_id": "%s"}' % PLAN.encode(), JSON),
    ("nested", "CreateProject", json.dumps(PROJECT).encode(), JSON),
    (
        "charset",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "Content-Type": "application/json; charset=utf-8"},
    ),
    (
        "suffix",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "Content-Type": "application/vnd.x+json"},
    ),
    (
        "not json",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "Content-Type": "text/plain"},
    ),
    (
        "unlabelled",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {"Authorization": JSON["Authorization"]},
    ),
    ("malformed", "SubmitPlan", b'{"plan_id": ', JSON),
    ("not utf-8", "SubmitPlan", b'{"plan_id": "\xff"}', JSON),
    ("too deep", "SubmitPlan", b"[" * 1500 + b"]" * 1500, JSON),
    ("null", "SubmitPlan", b"null", JSON),
    ("empty", "SubmitPlan", b"", JSON),
    ("extra field", "SubmitPlan", b'{"plan_id":"%s","x":1}' % PLAN.encode(), JSON),
    (
        "bad nested",
        "CreateProject",
        json.dumps(
            {**PROJECT, "policy": {"approvers": ["key:a", "key:a"], "required_approvals": 1}}
        ).encode(),
        JSON,
    ),
    (
        "no credentials",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {"Content-Type": "application/json"},
    ),
    ("no credentials, bad json", "SubmitPlan", b"{", {"Content-Type": "application/json"}),
    (
        "unknown key",
        "SubmitPlan",
        b"{}",
        {**JSON, "Authorization": "Bearer hisho_00000000000000ff_" + "x" * 43},
    ),
    (
        "reader",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "Authorization": f"Bearer {READER}"},
    ),
    (
        "correlation",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "X-Correlation-Id": "{aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee}"},
    ),
    (
        "bad correlation",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "X-Correlation-Id": "nope"},
    ),
    ("empty key", "SubmitPlan", b"{}", {**JSON, "Idempotency-Key": "", "X-Correlation-Id": ""}),
    (
        "long key",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "Idempotency-Key": "k" * 256},
    ),
    ("key", "SubmitPlan", b'{"plan_id":"%s"}' % PLAN.encode(), {**JSON, "Idempotency-Key": "k"}),
    (
        "key again",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "Idempotency-Key": "k"},
    ),
    (
        "key, other body",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % (PLAN[:-1] + "6").encode(),
        {**JSON, "Idempotency-Key": "k"},
    ),
    (
        "traceparent",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "traceparent": f"00-{TRACE}-b7ad6b7169203331-01"},
    ),
    ("unknown type", "Nope", b"{}", JSON),
    (
        "nul nested",
        "CreateProject",
        json.dumps(
            {**PROJECT, "policy": {"approvers": ["key:a\x00"], "required_approvals": 1}}
        ).encode(),
        JSON,
    ),
    ("nul in a key", "SubmitPlan", b'{"plan_id":"%s","\\u0000":1}' % PLAN.encode(), JSON),
    ("lone surrogate", "CreateProject", json.dumps({**PROJECT, "name": "\ud800"}).encode(), JSON),
    (
        "nul, no credentials",
        "CreateProject",
        json.dumps({**PROJECT, "name": "\x00"}).encode(),
        {"Content-Type": "application/json"},
    ),
    ("lost confirm", "SubmitPlan", b'{"plan_id":"%s"}' % LOST.encode(), JSON),
    (
        "lost confirm, keyed",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % LOST.encode(),
        {**JSON, "Idempotency-Key": "lost"},
    ),
    (
        "lost confirm, retried",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % LOST.encode(),
        {**JSON, "Idempotency-Key": "lost"},
    ),
    (
        "lost confirm, other body",
        "SubmitPlan",
        b'{"plan_id":"%s"}' % PLAN.encode(),
        {**JSON, "Idempotency-Key": "lost"},
    ),
]

# Other methods on the command paths (method, path): the fast path must pass them on.
VALID = b'{"plan_id":"%s"}' % PLAN.encode()
METHOD_CASES: list[tuple[str, str]] = [
    ("PUT", "/v1/commands/SubmitPlan"),
    ("PATCH", "/v1/commands/SubmitPlan"),
    ("DELETE", "/v1/commands/SubmitPlan"),
    ("GET", "/v1/commands/SubmitPlan"),
    ("OPTIONS", "/v1/commands/SubmitPlan"),
    ("POST", f"/v1/commands/{PLAN}"),
    ("POST", "/v1/commands/SubmitPlan/x"),
]

_NOISE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ][\d:.]+(Z|\+00:00)"), "<time>"),
    (re.compile(r"00-(?!" + TRACE + ")[0-9a-f]{32}-"), "00-<trace>-"),
    (re.compile(r"(00-\S{7,32})-[0-9a-f]{16}-0"), r"\1-<span>-0"),
]


def _normalised(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    for pattern, replacement in _NOISE:
        text = pattern.sub(replacement, text)
    return text


def _ingress() -> FakedIngress:
    # Key lookups are compared too: a key cache that outlives the run keeps them exact.
    ingress = FakedIngress(ingress_key_cache_seconds=300)
    _lose_first_confirms(ingress)
    return ingress


def _lose_first_confirms(ingress: FakedIngress) -> None:
    """The first publish of each LOST command reaches the broker, but its confirm is lost."""
    publisher, lost = ingress.publisher, set()
    publish = publisher.publish

    async def losing(command: OutgoingCommand) -> None:
        await publish(command)
        if LOST.encode() in command.body and command.message_id not in lost:
            lost.add(command.message_id)
            raise PublishOutcomeUnknownError("fake confirm timeout")

    publisher.publish = losing  # type: ignore[method-assign]


def _fast_path_index(app: FastAPI) -> int:
    """Where the app's `CommandFastPath` is among its middlewares (outermost first)."""
    classes: list[object] = [item.cls for item in app.user_middleware]
    found = [i for i, cls in enumerate(classes) if cls is CommandFastPath]
    assert len(found) == 1
    return found[0]


def _route_only(app: FastAPI) -> FastAPI:
    """The same app with the fast path unplugged: every request reaches the FastAPI route."""
    del app.user_middleware[_fast_path_index(app)]
    return app


def _counting(app: FastAPI) -> list[int]:
    """Count the requests the app's fast path answers (first) and passes on (second)."""
    taken: list[int] = [0, 0]
    index = _fast_path_index(app)
    app.user_middleware.insert(index + 1, Middleware(_Reached, counts=taken, slot=1))
    app.user_middleware.insert(index, Middleware(_Reached, counts=taken, slot=0))
    return taken


class _Reached:
    """Counts the requests with a body that reach it, then subtracts from the slot before."""

    def __init__(self, app: ASGIApp, *, counts: list[int], slot: int) -> None:
        self._app = app
        self._counts = counts
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in {"GET", "HEAD", "OPTIONS"}:
            self._counts[self._slot] += 1
            self._counts[0] -= self._slot  # passed on: not answered by the fast path
        await self._app(scope, receive, send)


async def _answers(
    ingress: FakedIngress, app: FastAPI, cases: int = len(CASES), **transport: Any
) -> list[str]:
    answers = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, **transport), base_url="http://ingress"
        ) as client,
    ):
        for name, command_type, body, headers in CASES[:cases]:
            published = len(ingress.publisher.published)
            response = await client.post(
                f"/v1/commands/{command_type}", content=body, headers=headers
            )
            answers.append(
                _normalised(
                    {
                        "case": name,
                        "status": response.status_code,
                        "headers": response.headers.raw,
                        "body": response.text,
                        "published": [
                            vars(command) for command in ingress.publisher.published[published:]
                        ],
                    }
                )
            )
        for method, path in METHOD_CASES if cases == len(CASES) else []:
            published = len(ingress.publisher.published)
            response = await client.request(method, path, content=VALID, headers=JSON)
            answers.append(
                _normalised(
                    {
                        "case": f"{method} {path}",
                        "status": response.status_code,
                        "headers": response.headers.raw,
                        "body": response.text,
                        "published": len(ingress.publisher.published) - published,
                    }
                )
            )
    answers.append(_normalised({"lookups": ingress.keys.lookups, "hits": ingress.store.counters}))
    return answers


async def test_the_fast_path_answers_every_case_as_the_route_does() -> None:
    fast, route = _ingress(), _ingress()
    taken = _counting(fast.app)
    fast_answers = await _answers(fast, fast.app)
    route_answers = await _answers(route, _route_only(route.app))
    assert fast_answers == route_answers
    # the cases that are accepted, above, and the two of unknown outcome
    assert len(fast.publisher.published) == 10
    # answered (202, 401, 403, 409, 504); declined, for the route (and PUT, PATCH, DELETE and
    # the two POSTs beside a command's path; GET and OPTIONS have no body to buffer)
    assert taken == [15, 24]
    methods = [json.loads(answer) for answer in fast_answers[len(CASES) : -1]]
    assert [answer["status"] for answer in methods] == [405, 405, 405, 405, 204, 405, 404]


async def _crash(command: OutgoingCommand) -> None:
    raise RuntimeError(f"a bug publishing {command.type}")


async def _lost(command: OutgoingCommand) -> None:
    raise PublishOutcomeUnknownError(f"no confirm for {command.type}")


@pytest.mark.parametrize("failure", ["broker", "redis", "key store", "crash", "lost"])
async def test_the_fast_path_fails_as_the_route_does(failure: str) -> None:
    async def answers(ingress: FakedIngress, app: FastAPI) -> list[str]:
        ingress.publisher.failing = failure == "broker"
        ingress.store.down = failure == "redis"
        ingress.keys.failing = failure == "key store"
        if failure == "crash":
            ingress.publisher.publish = _crash  # type: ignore[method-assign]
        if failure == "lost":
            ingress.publisher.publish = _lost  # type: ignore[method-assign]
        return await _answers(ingress, app, cases=2, raise_app_exceptions=False)

    fast, route = _ingress(), _ingress()
    assert await answers(fast, fast.app) == await answers(route, _route_only(route.app))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with ingress_client(FakedIngress(ingress_rate_limit=2).app) as http:
        yield http


async def test_a_request_the_fast_path_declines_counts_once_against_the_rate_limit(
    client: httpx.AsyncClient,
) -> None:
    invalid = await client.post("/v1/commands/SubmitPlan", content=b"{}", headers=JSON)
    valid = await client.post(
        "/v1/commands/SubmitPlan", content=b'{"plan_id":"%s"}' % PLAN.encode(), headers=JSON
    )
    over = await client.post(
        "/v1/commands/SubmitPlan", content=b'{"plan_id":"%s"}' % PLAN.encode(), headers=JSON
    )
    assert [invalid.status_code, valid.status_code, over.status_code] == [422, 202, 429]


async def test_an_accepted_command_has_exactly_the_route_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/commands/SubmitPlan",
        content=b'{"plan_id":"%s"}' % PLAN.encode(),
        headers={**JSON, "Idempotency-Key": "once"},
    )
    replayed = await client.post(
        "/v1/commands/SubmitPlan",
        content=b'{"plan_id":"%s"}' % PLAN.encode(),
        headers={**JSON, "Idempotency-Key": "once"},
    )
    command_id = response.json()["command_id"]
    location = f"/v1/commands/{command_id}".encode()
    body = b'{"command_id":"%s","status_url":"%s"}' % (command_id.encode(), location)
    assert (response.status_code, response.content) == (202, body)
    assert response.headers.raw == [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
        (b"location", location),
    ]
    assert (replayed.status_code, replayed.content) == (202, body)
    assert replayed.headers.raw[-1] == (b"idempotent-replayed", b"true")
