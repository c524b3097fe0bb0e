"""`/v1/people` through the real ingress app and PostgreSQL: admin or self, problems, no change.

Every refused request (401, 403, 404, 409, 415, 422) leaves the directory and the outbox as
they were; the outbox rows of accepted changes carry principal ids and field names only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from pydantic import HttpUrl
from sqlalchemy import func, select

from infra.auth import Scope, SqlApiKeyStore
from infra.db.people import person_aggregate_id
from infra.db.people_tables import people
from infra.db.tables import outbox
from tests.ingress_support import IngressKeys, ingress_app, ingress_client
from tests.jwt_support import AUDIENCE, ISSUER, SigningKey, jwks_server, valid_claims

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

EMAIL = "grace.hopper@navy.example"
WEBHOOK = "https://chat.example/hooks/grace"


@dataclass(frozen=True)
class Caller:
    """A key's bearer header and its principal id."""

    headers: dict[str, str]
    principal: str


@pytest.fixture(scope="module")
async def admin(engine: AsyncEngine) -> Caller:
    issued = await SqlApiKeyStore(engine).create(scopes=[Scope.ADMIN], name="people admin")
    return Caller(IngressKeys.bearer(issued.token), f"key:{issued.key.id}")


@pytest.fixture(scope="module")
async def member(engine: AsyncEngine) -> Caller:
    issued = await SqlApiKeyStore(engine).create(scopes=[Scope.EVENTS_READ], name="people user")
    return Caller(IngressKeys.bearer(issued.token), f"key:{issued.key.id}")


@pytest.fixture
async def client(
    settings: Settings,
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,  # declares the topology: the publisher starts at once
) -> AsyncIterator[httpx.AsyncClient]:
    async with ingress_app(settings, engine=engine) as app, ingress_client(app) as http:
        yield http


def _user() -> str:
    return f"user:https://issuer.example/realms/team/{uuid.uuid4()}"


def _body(principal_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "principal_id": principal_id,
        "display_name": "Grace Hopper",
        "email": EMAIL,
        "chat_webhook_url": WEBHOOK,
        "preferences": {"channels": ["email"], "min_priority": "high", "digest": True},
        **fields,
    }


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["type"], body["status"]) == (f"https://hisho.dev/problems/{slug}", status)
    return body


async def _snapshot(engine: AsyncEngine, principal_id: str) -> tuple[Any, ...]:
    """The person's row and the number of their events."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(people).where(people.c.principal_id == principal_id))
        ).first()
        events = await conn.scalar(
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.aggregate_id == person_aggregate_id(principal_id))
        )
    return (None if row is None else tuple(row), events)


async def _events(engine: AsyncEngine, principal_id: str) -> list[Any]:
    query = (
        select(outbox.c.type, outbox.c.data, outbox.c.actor)
        .where(outbox.c.aggregate_id == person_aggregate_id(principal_id))
        .order_by(outbox.c.aggregate_version)
    )
    async with engine.connect() as conn:
        return list(await conn.execute(query))


async def test_an_admin_adds_reads_changes_and_erases_a_user_with_slashes_in_its_id(
    client: httpx.AsyncClient, admin: Caller, engine: AsyncEngine
) -> None:
    pid = _user()
    created = await client.post("/v1/people", json=_body(pid), headers=admin.headers)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/people/{pid}"
    assert created.json()["preferences"] == {
        "channels": ["email"],
        "min_priority": "high",
        "digest": True,
    }
    for path in (f"/v1/people/{pid}", f"/v1/people/{quote(pid, safe='')}"):
        got = await client.get(path, headers=admin.headers)
        assert got.status_code == 200, (path, got.text)
        assert got.json() == created.json()
    patched = await client.patch(
        f"/v1/people/{pid}",
        json={"email": None, "display_name": "Rear Admiral Hopper"},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["email"], patched.json()["display_name"]) == (
        None,
        "Rear Admiral Hopper",
    )
    assert patched.json()["chat_webhook_url"] == WEBHOOK
    erased = await client.delete(f"/v1/people/{pid}", headers=admin.headers)
    assert (erased.status_code, erased.content) == (204, b"")
    _problem(await client.get(f"/v1/people/{pid}", headers=admin.headers), 404, "not-found")
    assert await _snapshot(engine, pid) == (None, 3)
    events = await _events(engine, pid)
    assert [row.type for row in events] == ["PersonRegistered", "PersonUpdated", "PersonErased"]
    assert events[1].data == {"principal_id": pid, "changed": ["display_name", "email"]}
    assert {row.actor["id"] for row in events} == {admin.principal.removeprefix("key:")}
    stored = " ".join(f"{row.data} {row.actor}" for row in events)
    for secret in (EMAIL, WEBHOOK, "Grace", "Hopper", "chat.example"):
        assert secret not in stored


async def test_a_caller_manages_their_own_entry_and_nobody_elses(
    client: httpx.AsyncClient, member: Caller, admin: Caller, engine: AsyncEngine
) -> None:
    me, other = member.principal, _user()
    await client.post("/v1/people", json=_body(other), headers=admin.headers)
    before = await _snapshot(engine, other)
    refused = [
        await client.post("/v1/people", json=_body(_user()), headers=member.headers),
        await client.get(f"/v1/people/{other}", headers=member.headers),
        await client.get(f"/v1/people/{_user()}", headers=member.headers),  # unknown: still 403
        await client.patch(
            f"/v1/people/{other}", json={"display_name": "x"}, headers=member.headers
        ),
        await client.delete(f"/v1/people/{other}", headers=member.headers),
        await client.get("/v1/people", headers=member.headers),
    ]
    for response in refused:
        _problem(response, 403, "forbidden")
    assert await _snapshot(engine, other) == before

    created = await client.post("/v1/people", json=_body(me), headers=member.headers)
    assert created.status_code == 201, created.text
    patch = {"preferences": {"channels": [], "min_priority": "urgent"}}
    patched = await client.patch(f"/v1/people/{me}", json=patch, headers=member.headers)
    assert patched.json()["preferences"] == {
        "channels": [],
        "min_priority": "urgent",
        "digest": False,
    }
    assert (await client.get(f"/v1/people/{me}", headers=member.headers)).json() == patched.json()
    assert (await client.delete(f"/v1/people/{me}", headers=member.headers)).status_code == 204
    assert await _snapshot(engine, me) == (None, 3)
    events = await _events(engine, me)
    assert events[1].data["changed"] == ["preferences"]
    assert {row.actor["id"] for row in events} == {me.removeprefix("key:")}


async def test_a_second_entry_for_one_id_is_409_and_changes_nothing(
    client: httpx.AsyncClient, admin: Caller, engine: AsyncEngine
) -> None:
    pid = _user()
    await client.post("/v1/people", json=_body(pid), headers=admin.headers)
    before = await _snapshot(engine, pid)
    again = await client.post(
        "/v1/people", json=_body(pid, display_name="Impostor"), headers=admin.headers
    )
    _problem(again, 409, "person-exists")
    assert await _snapshot(engine, pid) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not an address"}, "body.email"),
        ({"email": "grace@localhost"}, "body.email"),
        ({"chat_webhook_url": "ftp://chat.example/x"}, "body.chat_webhook_url"),
        ({"chat_webhook_url": "https://"}, "body.chat_webhook_url"),
        ({"display_name": "Gr\x00ce"}, "body.display_name"),
        ({"display_name": None}, "body.display_name"),
        ({"display_name": ""}, "body.display_name"),
        ({"preferences": None}, "body.preferences"),
        ({"preferences": {"channels": ["email", "email"]}}, "body.preferences.channels"),
        ({"preferences": {"digest": "yes"}}, "body.preferences.digest"),
        ({"preferences": {"channels": ["sms"]}}, "body.preferences.channels.0"),
        ({"phone": "+1 555"}, "body.phone"),
    ],
)
async def test_invalid_changes_are_422_naming_the_field_and_change_nothing(
    client: httpx.AsyncClient,
    admin: Caller,
    engine: AsyncEngine,
    change: dict[str, Any],
    field: str,
) -> None:
    pid = _user()
    await client.post("/v1/people", json=_body(pid), headers=admin.headers)
    before = await _snapshot(engine, pid)
    patched = await client.patch(f"/v1/people/{pid}", json=change, headers=admin.headers)
    body = _problem(patched, 422, "validation")
    assert field in {error["field"] for error in body["errors"]}, body
    assert await _snapshot(engine, pid) == before
    new = _user()
    created = await client.post("/v1/people", json=_body(new, **change), headers=admin.headers)
    assert field in {error["field"] for error in _problem(created, 422, "validation")["errors"]}
    assert await _snapshot(engine, new) == (None, 0)


NOT_PRINCIPALS = ["alice", "admin:x", "key:", "key:a\x00b", "key:a\tb", "k" * 301]


@pytest.mark.parametrize("principal_id", NOT_PRINCIPALS)
async def test_a_path_that_is_not_a_principal_id_is_422(
    client: httpx.AsyncClient, admin: Caller, principal_id: str
) -> None:
    path = f"/v1/people/{quote(principal_id, safe=':')}"
    for response in (
        await client.get(path, headers=admin.headers),
        await client.patch(path, json={"display_name": "x"}, headers=admin.headers),
        await client.delete(path, headers=admin.headers),
    ):
        _problem(response, 422, "validation")


@pytest.mark.parametrize("principal_id", [*NOT_PRINCIPALS, "key:a\nb", 7, None])
async def test_a_new_person_without_a_principal_id_is_422(
    client: httpx.AsyncClient, admin: Caller, principal_id: Any
) -> None:
    created = await client.post("/v1/people", json=_body(principal_id), headers=admin.headers)
    body = _problem(created, 422, "validation")
    assert {error["field"] for error in body["errors"]} == {"body.principal_id"}


async def test_a_path_with_a_line_break_is_no_route_at_all(
    client: httpx.AsyncClient, admin: Caller
) -> None:
    response = await client.get("/v1/people/key:a%0Ab", headers=admin.headers)
    _problem(response, 404, "not-found")


async def test_unknown_people_are_404_for_an_admin(
    client: httpx.AsyncClient, admin: Caller, engine: AsyncEngine
) -> None:
    pid = _user()
    path = f"/v1/people/{pid}"
    _problem(await client.get(path, headers=admin.headers), 404, "not-found")
    _problem(
        await client.patch(path, json={"display_name": "x"}, headers=admin.headers),
        404,
        "not-found",
    )
    _problem(await client.delete(path, headers=admin.headers), 404, "not-found")
    assert await _snapshot(engine, pid) == (None, 0)


async def test_credentials_and_media_type_are_checked_first(
    client: httpx.AsyncClient, admin: Caller, engine: AsyncEngine
) -> None:
    pid = _user()
    _problem(await client.post("/v1/people", json=_body(pid)), 401, "unauthorized")
    _problem(await client.get(f"/v1/people/{pid}"), 401, "unauthorized")
    _problem(await client.get("/v1/people"), 401, "unauthorized")
    form = await client.post(
        "/v1/people",
        content=b"principal_id=x",
        headers={**admin.headers, "content-type": "application/x-www-form-urlencoded"},
    )
    _problem(form, 415, "unsupported-media-type")
    assert await _snapshot(engine, pid) == (None, 0)


async def test_an_admin_pages_through_the_directory_in_principal_id_order(
    client: httpx.AsyncClient, admin: Caller
) -> None:
    prefix = f"persona:{uuid.uuid4()}"
    ids = [f"{prefix}-{n}" for n in range(5)]
    for pid in reversed(ids):
        body = {"principal_id": pid, "display_name": pid}
        assert (await client.post("/v1/people", json=body, headers=admin.headers)).is_success
    seen: list[str] = []
    cursor: str | None = f"{prefix}-"
    while cursor is not None and cursor.startswith(prefix):
        page = await client.get(
            "/v1/people", params={"cursor": cursor, "limit": 2}, headers=admin.headers
        )
        assert page.status_code == 200, page.text
        items, cursor = page.json()["items"], page.json()["next_cursor"]
        assert len(items) <= 2
        seen += [item["principal_id"] for item in items if item["principal_id"].startswith(prefix)]
    assert seen == ids
    for bad in ({"cursor": "nobody"}, {"cursor": "key:\x00"}, {"limit": 0}, {"limit": 201}):
        _problem(
            await client.get("/v1/people", params=bad, headers=admin.headers), 422, "validation"
        )


async def test_the_directory_is_documented_in_openapi(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/people"]) == {"get", "post"}
    assert set(paths["/v1/people/{principal_id}"]) == {"get", "patch", "delete"}
    create = paths["/v1/people"]["post"]
    assert {"201", "401", "403", "409", "415", "422"} <= set(create["responses"])
    assert list(create["responses"]["409"]["content"]) == ["application/problem+json"]
    erase = paths["/v1/people/{principal_id}"]["delete"]
    assert {"204", "403", "404", "422"} <= set(erase["responses"])
    assert create["responses"]["201"]["links"]["erase"]["operationId"] == "erase_person"


async def test_a_jwt_user_manages_their_own_entry_under_their_user_principal_id(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    key = SigningKey.rsa()
    claims = valid_claims(sub=f"realms/team/{uuid.uuid4()}", scope="state:read")
    me = f"user:{ISSUER}/{claims['sub']}"  # user:https://idp.test/realms/team/<uuid>
    async with jwks_server(key) as server:
        jwt_settings = settings.model_copy(
            update={
                "jwt_issuer": ISSUER,
                "jwt_audience": AUDIENCE,
                "jwt_jwks_url": HttpUrl(server.url),
            }
        )
        headers = {"Authorization": f"Bearer {key.sign(claims)}"}
        async with ingress_app(jwt_settings, engine=engine) as app, ingress_client(app) as client:
            created = await client.post("/v1/people", json=_body(me), headers=headers)
            assert created.status_code == 201, created.text
            assert created.headers["location"] == f"/v1/people/{me}"
            got = await client.get(f"/v1/people/{quote(me, safe='')}", headers=headers)
            assert got.json()["principal_id"] == me
            other = _user()
            refused = await client.post("/v1/people", json=_body(other), headers=headers)
            _problem(refused, 403, "forbidden")
            assert (await client.delete(f"/v1/people/{me}", headers=headers)).status_code == 204
    assert await _snapshot(engine, me) == (None, 2)
    assert await _snapshot(engine, other) == (None, 0)
    actors = {(row.actor["kind"], row.actor["id"]) for row in await _events(engine, me)}
    assert actors == {("user", f"{ISSUER}/{claims['sub']}")}
