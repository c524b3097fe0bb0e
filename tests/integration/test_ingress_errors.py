"""Every error the ingress answers, on the real services: status, problem body, nothing published.

Each case runs with a private tap queue bound to `hisho.commands` for the routing key it posts
to, and afterwards counts *every* message in it: a command published by mistake shows up
whoever the ingress took its actor to be (an unauthenticated request has no key id to filter
by). The session has a vhost of its own and its tests run one at a time, so the tap sees
only what the test itself caused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from tests.amqp_delay_proxy import loss_noticed
from tests.ingress_support import (
    IngressKeys,
    Tap,
    TcpProxy,
    command_publisher,
    ingress_app,
    ingress_client,
    make_test_keys,
    tap,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import httpx
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

PROBLEMS = "https://hisho.dev/problems/"
LIMIT = 4096


@pytest.fixture(scope="module")
async def keys(engine: AsyncEngine) -> IngressKeys:
    return await make_test_keys(engine)


@pytest.fixture
async def client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    limited = settings.model_copy(update={"ingress_max_body_bytes": LIMIT})
    async with ingress_app(limited, engine=engine) as app, ingress_client(app) as http:
        yield http


def _plan() -> dict[str, str]:
    return {"plan_id": str(uuid4())}


async def _streamed() -> AsyncIterator[bytes]:
    yield b'{"plan_id": "'
    for _ in range(8):
        yield b"0" * 1024


@dataclass(frozen=True)
class Refusal:
    """A request the ingress must refuse, and the problem it must answer with."""

    name: str
    request: Callable[[IngressKeys], dict[str, Any]]
    status: int
    slug: str
    mentions: str


def _as_writer(keys: IngressKeys, **headers: str) -> dict[str, str]:
    return {**IngressKeys.bearer(keys.writer), **headers}


REFUSALS = [
    Refusal("no credentials", lambda _: {"json": _plan()}, 401, "unauthorized", "Authorization"),
    Refusal(
        "unknown key",
        lambda _: {
            "json": _plan(),
            "headers": IngressKeys.bearer("hisho_0123456789abcdef_" + "x" * 43),
        },
        401,
        "unauthorized",
        "not valid",
    ),
    Refusal(
        "missing scope",
        lambda k: {"json": _plan(), "headers": IngressKeys.bearer(k.reader)},
        403,
        "forbidden",
        "commands:write",
    ),
    Refusal(
        "invalid field",
        lambda k: {"json": {"plan_id": "x", "extra": 1}, "headers": _as_writer(k)},
        422,
        "validation",
        "body.plan_id",
    ),
    Refusal(
        "invalid correlation header",
        lambda k: {"json": _plan(), "headers": _as_writer(k, **{"X-Correlation-Id": "abc"})},
        422,
        "validation",
        "header.X-Correlation-Id",
    ),
    Refusal(
        "wrong content type",
        lambda k: {
            "content": b"plan_id=1",
            "headers": _as_writer(k, **{"Content-Type": "application/x-www-form-urlencoded"}),
        },
        415,
        "unsupported-media-type",
        "application/x-www-form-urlencoded",
    ),
    Refusal(
        "declared length over the limit",
        lambda k: {
            "content": b"{" + b" " * LIMIT + b"}",
            "headers": _as_writer(k, **{"Content-Type": "application/json"}),
        },
        413,
        "payload-too-large",
        "Content-Length",
    ),
    Refusal(
        "streamed body over the limit",
        lambda k: {
            "content": _streamed(),
            "headers": _as_writer(k, **{"Content-Type": "application/json"}),
        },
        413,
        "payload-too-large",
        "streamed",
    ),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=[refusal.name for refusal in REFUSALS])
async def test_refused_request_is_a_problem_and_publishes_nothing(
    client: httpx.AsyncClient,
    keys: IngressKeys,
    amqp: AbstractRobustConnection,
    refusal: Refusal,
) -> None:
    async with tap(amqp, "SubmitPlan") as commands:
        response = await client.post("/v1/commands/SubmitPlan", **refusal.request(keys))
        published = await _everything(commands)
    _assert_problem(response, refusal.status, refusal.slug, refusal.mentions)
    assert published == []


async def _everything(commands: Tap) -> list[dict[str, Any]]:
    """Every envelope in the tap, whoever sent it (bodies that are not JSON kept raw)."""
    found: list[dict[str, Any]] = []
    for message in await commands.drain():
        try:
            found.append(json.loads(message.body))
        except ValueError:
            found.append({"raw": message.body.decode(errors="replace")})
    return found


def _assert_problem(response: httpx.Response, status: int, slug: str, mentions: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PROBLEMS + slug
    assert body["status"] == status
    assert body["title"]
    assert mentions in body["detail"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith('Bearer realm="hisho"')
    if status == 422:
        assert body["errors"]
        assert all(error["field"] and error["message"] for error in body["errors"])


async def test_an_unknown_command_type_is_404_and_publishes_nothing(
    client: httpx.AsyncClient, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    async with tap(amqp, "LaunchRocket") as rockets, tap(amqp, "SubmitPlan") as plans:
        response = await client.post(
            "/v1/commands/LaunchRocket", json=_plan(), headers=IngressKeys.bearer(keys.writer)
        )
        published = await _everything(rockets) + await _everything(plans)
    _assert_problem(response, 404, "unknown-command-type", "LaunchRocket")
    assert published == []


async def test_an_idempotency_conflict_is_409_and_publishes_nothing_more(
    client: httpx.AsyncClient, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    headers = {**IngressKeys.bearer(keys.writer), "Idempotency-Key": f"conflict-{uuid4()}"}
    async with tap(amqp, "SubmitPlan") as commands:
        first = await client.post("/v1/commands/SubmitPlan", json=_plan(), headers=headers)
        conflict = await client.post("/v1/commands/SubmitPlan", json=_plan(), headers=headers)
        published = await _everything(commands)
    _assert_problem(conflict, 409, "idempotency-conflict", "different request body")
    assert [env["id"] for env in published] == [first.json()["command_id"]]


async def test_over_the_rate_limit_is_429_and_publishes_nothing_more(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    keys = await make_test_keys(engine)  # fresh keys: a window of their own
    limited = settings.model_copy(update={"ingress_rate_limit": 2})
    async with (
        ingress_app(limited, engine=engine) as app,
        ingress_client(app) as client,
        tap(amqp, "SubmitPlan") as commands,
    ):
        answers = [
            await client.post("/v1/commands/SubmitPlan", json=_plan(), headers=_as_writer(keys))
            for _ in range(3)
        ]
        published = await _everything(commands)
    assert [answer.status_code for answer in answers[:2]] == [202, 202]
    _assert_problem(answers[2], 429, "rate-limited", "per key")
    assert int(answers[2].headers["retry-after"]) >= 1
    assert [env["id"] for env in published] == [a.json()["command_id"] for a in answers[:2]]


async def test_an_unconfirmed_publish_is_503_and_nothing_is_accepted(
    settings: Settings, engine: AsyncEngine, keys: IngressKeys, amqp: AbstractRobustConnection
) -> None:
    proxy = TcpProxy.to_url(settings.amqp)
    url = await proxy.start_url()
    try:
        async with (
            command_publisher(url, confirm_timeout=1.0) as publisher,
            ingress_app(settings, engine=engine, publisher=publisher) as app,
            ingress_client(app) as client,
            tap(amqp, "SubmitPlan") as commands,
        ):
            proxy.cut()
            await loss_noticed(publisher)  # else the outcome is unknown (504)
            response = await client.post(
                "/v1/commands/SubmitPlan", json=_plan(), headers=IngressKeys.bearer(keys.writer)
            )
            published = await _everything(commands)
    finally:
        await proxy.close()
    _assert_problem(response, 503, "broker-unavailable", "did not confirm")
    assert response.headers["retry-after"] == "1"
    assert published == []
