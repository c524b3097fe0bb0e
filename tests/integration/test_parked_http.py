"""`/v1/parked` through the real ingress app on REAL parked messages (scope `admin`).

Every refused request (401, 403, 404, 409, 422) leaves the records, the parking queue and
the outbox as they were.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from infra.auth import Scope, SqlApiKeyStore
from infra.db.parked import parked_aggregate_id
from infra.db.tables import outbox
from tests.ingress_support import IngressKeys, ingress_app, ingress_client
from tests.parked_support import console, parked_messages, until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings
    from tests.parked_support import Parked

PATH = "/v1/parked"


@pytest.fixture(scope="module")
async def admin(engine: AsyncEngine) -> tuple[dict[str, str], str]:
    issued = await SqlApiKeyStore(engine).create(scopes=[Scope.ADMIN], name="parked admin")
    return IngressKeys.bearer(issued.token), f"key:{issued.key.id}"


@pytest.fixture(scope="module")
async def reader(engine: AsyncEngine) -> dict[str, str]:
    scopes = [Scope.STATE_READ, Scope.COMMANDS_WRITE]
    issued = await SqlApiKeyStore(engine).create(scopes=scopes, name="parked reader")
    return IngressKeys.bearer(issued.token)


@pytest.fixture
async def client(
    settings: Settings,
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,  # declares the topology: the publisher starts at once
) -> AsyncIterator[httpx.AsyncClient]:
    async with ingress_app(settings, engine=engine) as app, ingress_client(app) as http:
        yield http


async def _applied(parked: Parked, *envelopes: object) -> None:
    async def applied() -> bool:
        return all([await parked.effects_of(e) == 1 for e in envelopes])  # type: ignore[arg-type]

    await until(applied, "the re-driven messages' effects")


async def test_list_show_redrive_and_discard_over_http(
    client: httpx.AsyncClient,
    admin: tuple[dict[str, str], str],
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,
    settings: Settings,
) -> None:
    headers, principal = admin
    async with parked_messages(engine, amqp, settings.amqp, poison=4, flaky=1) as parked:
        listed = await client.get(
            PATH, params={"consumer": parked.name, "limit": 3}, headers=headers
        )
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert len(page["items"]) == 3
        assert [(g["error_type"], g["count"]) for g in page["groups"]] == [
            ("ValueError", 4),
            ("ConnectionError", 1),
        ]
        rest = await client.get(
            PATH, params={"consumer": parked.name, "cursor": page["next_cursor"]}, headers=headers
        )
        assert len(rest.json()["items"]) == 2
        assert rest.json()["next_cursor"] is None

        one, two, three, four = parked.poison
        shown = await client.get(f"{PATH}/{one.id}", headers=headers)
        assert shown.status_code == 200, shown.text
        assert shown.json()["body"]["envelope"]["id"] == str(one.id)
        assert shown.json()["headers"]["x-hisho-parked-consumer"] == parked.name

        parked.failures.poison.clear()
        sent = await client.post(f"{PATH}/{one.id}/redrive", headers=headers)
        assert (sent.status_code, sent.json()["selected"]) == (200, [str(one.id)])
        assert (sent.json()["sent"], sent.json()["dry_run"]) == (1, False)
        await _applied(parked, one)
        again = await client.post(f"{PATH}/{one.id}/redrive", headers=headers)
        assert (again.status_code, again.json()["type"]) == (
            409,
            "https://hisho.dev/problems/not-parked",
        )
        assert (await client.get(f"{PATH}/{one.id}", headers=headers)).json()["state"] == "redriven"

        bulk = {"consumer": parked.name, "error_type": "ValueError", "rate": 100, "limit": 2}
        dry = await client.post(f"{PATH}/redrive", json={**bulk, "dry_run": True}, headers=headers)
        assert (dry.status_code, dry.json()["sent"], len(dry.json()["selected"])) == (200, 0, 2)
        assert await parked.copies() == 4
        done = await client.post(f"{PATH}/redrive", json=bulk, headers=headers)
        assert (done.status_code, done.json()["sent"]) == (200, 2)
        chosen = set(done.json()["selected"])
        await _applied(parked, *(e for e in (two, three, four) if str(e.id) in chosen))
        (left,) = (e for e in (two, three, four) if str(e.id) not in chosen)

        gone = await client.delete(
            f"{PATH}/{left.id}", params={"reason": "test data"}, headers=headers
        )
        assert gone.status_code == 204, gone.text
        default = await client.get(PATH, params={"consumer": parked.name}, headers=headers)
        assert [i["message_id"] for i in default.json()["items"]] == [str(parked.flaky[0].id)]
        async with engine.connect() as connection:
            rows = list(
                await connection.execute(
                    select(outbox.c.type, outbox.c.data, outbox.c.actor).where(
                        outbox.c.aggregate_id == parked_aggregate_id(parked.name, str(left.id))
                    )
                )
            )
        assert [(r.type, r.data["reason"], f"key:{r.actor['id']}") for r in rows] == [
            ("ParkedMessageDiscarded", "test data", principal)
        ]
        twice = await client.delete(f"{PATH}/{left.id}", headers=headers)
        assert twice.status_code == 409
        await asyncio.sleep(0.3)
        assert await parked.effects_of(left) == 0
        assert [await parked.effects_of(e) for e in (one, two, three, four)].count(1) == 3


async def test_bad_requests_are_problems_and_change_nothing(  # noqa: PLR0917  (fixtures)
    client: httpx.AsyncClient,
    admin: tuple[dict[str, str], str],
    reader: dict[str, str],
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,
    settings: Settings,
) -> None:
    headers, _ = admin
    async with parked_messages(engine, amqp, settings.amqp) as parked:
        (poison,) = parked.poison
        mine = f"{PATH}/{poison.id}"
        unknown = f"{PATH}/{uuid.uuid4()}"
        refused = [
            ("GET", PATH, {}, None, None, 401),
            ("GET", PATH, {}, None, reader, 403),
            ("POST", f"{mine}/redrive", {}, None, reader, 403),
            ("DELETE", mine, {}, None, reader, 403),
            ("POST", f"{PATH}/redrive", {}, {"consumer": parked.name}, reader, 403),
            ("GET", PATH, {"older_than": "x"}, None, headers, 422),
            ("GET", PATH, {"consumer": "nobody_here"}, None, headers, 422),
            ("GET", PATH, {"cursor": "bm90LWEtY3Vyc29y"}, None, headers, 422),
            ("GET", PATH, {"state": "lost"}, None, headers, 422),
            ("GET", f"{PATH}/a%00b", {}, None, headers, 422),
            ("GET", unknown, {}, None, headers, 404),
            ("POST", f"{unknown}/redrive", {}, None, headers, 404),
            ("DELETE", unknown, {}, None, headers, 404),
            ("DELETE", mine, {"consumer": "someone_else"}, None, headers, 404),
            ("DELETE", mine, {"reason": "a\nb"}, None, headers, 422),
            ("POST", f"{PATH}/redrive", {}, {"consumer": "nobody_here"}, headers, 422),
            ("POST", f"{PATH}/redrive", {}, {"younger_than": "soon"}, headers, 422),
            ("POST", f"{PATH}/redrive", {}, {"rate": 1, "limit": 1000}, headers, 422),
            ("POST", f"{PATH}/redrive", {}, {"extra": 1}, headers, 422),
        ]
        for method, path, params, body, auth, status in refused:
            answer = await client.request(method, path, params=params, json=body, headers=auth)
            assert answer.status_code == status, (method, path, params, body, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        async with console(engine, settings.amqp) as parking:
            assert (await parking.show(str(poison.id))).state == "parked"
        assert await parked.copies() == 1
        assert await parked.effects_of(poison) == 0
