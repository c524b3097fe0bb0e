"""JWTs through the real ingress, as deployed: keys from a local JWKS server (uvicorn on
127.0.0.1, random port) that rotates them, revocation in Redis and PostgreSQL.

The ingress is built from settings (`HISHO_JWT_*`) as `hisho run ingress` builds it; a
`GET /v1/plans` (scope `state:read`) answers 200 when the token is accepted.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import jwt
import pytest
from pydantic import HttpUrl, RedisDsn
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from infra.auth import AuthUnavailableError, JwtVerifier, TokenRevocations
from infra.auth.jwks import JwksKeys
from infra.auth.revocation import redis_key
from infra.redis_store import fail_fast_client
from tests.ingress_support import closed_port, ingress_app, ingress_client, service_env
from tests.jwt_support import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    SigningKey,
    confusion_tokens,
    jwks_server,
    valid_claims,
)
from tests.processor_support import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

FIRST, SECOND, ROTATED = SigningKey.rsa(), SigningKey.ec(), SigningKey.rsa()


def _jwt_settings(settings: Settings, server: JwksServer, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwt_jwks_url": HttpUrl(server.url),
            "jwt_jwks_refetch_seconds": 0.2,
            **overrides,
        }
    )


@pytest.fixture
async def server() -> AsyncIterator[JwksServer]:
    async with jwks_server(FIRST, SECOND) as running:
        yield running


@pytest.fixture
async def client(
    settings: Settings, engine: AsyncEngine, server: JwksServer
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        ingress_app(_jwt_settings(settings, server), engine=engine) as app,
        ingress_client(app) as http,
    ):
        yield http


async def _read(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(
        "/v1/plans", params={"limit": 1}, headers={"Authorization": f"Bearer {token}"}
    )


def _assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unauthorized")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_tokens_signed_by_a_published_rsa_or_ec_key_are_accepted(
    client: httpx.AsyncClient, server: JwksServer
) -> None:
    for key in (FIRST, SECOND):
        response = await _read(client, key.sign())
        assert response.status_code == 200, response.text
    assert server.fetches == 1  # both from one cached document


async def test_a_rotated_in_key_is_accepted_without_a_restart(
    client: httpx.AsyncClient, server: JwksServer
) -> None:
    assert (await _read(client, FIRST.sign())).status_code == 200
    server.publish(ROTATED)  # the provider rotates: the old keys are gone, a new kid signs

    async def accepted() -> None:
        assert (await _read(client, ROTATED.sign())).status_code == 200

    await eventually(accepted, deadline=5)
    assert server.fetches == 2  # one refetch, however many tries it took


def _refused_tokens() -> dict[str, str]:
    now = int(datetime.now(UTC).timestamp())
    return {
        "expired": FIRST.sign(valid_claims(exp=now - 5, iat=now - 3605)),
        "wrong audience": FIRST.sign(valid_claims(aud="someone-else")),
        "wrong issuer": FIRST.sign(valid_claims(iss="https://evil.test")),
        "no exp": FIRST.sign({k: v for k, v in valid_claims().items() if k != "exp"}),
        "no sub": FIRST.sign({k: v for k, v in valid_claims().items() if k != "sub"}),
        "unknown key": SigningKey.rsa().sign(),
        "published kid, other key": jwt.encode(
            valid_claims(), ROTATED.private, algorithm="RS256", headers={"kid": FIRST.kid}
        ),
        **confusion_tokens(FIRST),
    }


@pytest.fixture(scope="module")
async def shared_client(
    settings: Settings, engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    """One ingress for the refusals (they change nothing), its JWKS server never rotating."""
    async with (
        jwks_server(FIRST, SECOND) as fixed,
        ingress_app(_jwt_settings(settings, fixed), engine=engine) as app,
        ingress_client(app) as http,
    ):
        yield http


@pytest.mark.parametrize("case", sorted(_refused_tokens()))
async def test_a_bad_token_is_a_401_problem(shared_client: httpx.AsyncClient, case: str) -> None:
    assert (await _read(shared_client, FIRST.sign())).status_code == 200  # the keys are known
    _assert_unauthorized(await _read(shared_client, _refused_tokens()[case]))


async def test_forged_kids_cannot_make_the_ingress_hammer_the_jwks_server(
    settings: Settings, engine: AsyncEngine, server: JwksServer
) -> None:
    patient = _jwt_settings(settings, server, jwt_jwks_refetch_seconds=60)
    async with ingress_app(patient, engine=engine) as app, ingress_client(app) as client:
        assert (await _read(client, FIRST.sign())).status_code == 200
        forged = [SigningKey.rsa().sign() for _ in range(3)] * 10
        responses = await asyncio.gather(*(_read(client, token) for token in forged))
    assert {response.status_code for response in responses} == {401}
    assert server.fetches == 1  # within the interval: no refetch at all


async def test_a_token_revoked_with_the_cli_is_refused_and_listed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    claims = valid_claims()
    token = FIRST.sign(claims)
    assert (await _read(client, token)).status_code == 200
    expires = datetime.fromtimestamp(claims["exp"], UTC).isoformat()
    revoke = _cli(settings, "revoke", claims["jti"], "--expires-at", expires, "--reason", "leak")
    assert revoke.returncode == 0, revoke.stderr
    _assert_unauthorized(await _read(client, token))
    assert (await _read(client, FIRST.sign())).status_code == 200  # other ids still pass
    listed = _cli(settings, "revoked")
    assert [line for line in listed.stdout.splitlines() if line.startswith(claims["jti"])]
    assert "leak" in listed.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["revoke", "some-id", "--expires-at", "tomorrow"],
        ["revoke", "some-id", "--expires-at", "2030-01-01T00:00:00"],  # no offset
        ["revoke", " ", "--expires-at", "2030-01-01T00:00:00Z"],
    ],
)
def test_the_cli_refuses_bad_input_with_one_line(settings: Settings, args: list[str]) -> None:
    done = _cli(settings, *args)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("hisho: ")


async def test_revocations_hold_while_redis_is_unreachable(
    settings: Settings, engine: AsyncEngine, server: JwksServer
) -> None:
    dead = RedisDsn(f"redis://127.0.0.1:{closed_port()}/0")
    without_redis = _jwt_settings(settings, server, redis_url=dead)
    claims = valid_claims()
    dead_redis = fail_fast_client(str(dead), timeout=0.2)
    copied = await TokenRevocations(dead_redis, engine, timeout=0.2).revoke(
        claims["jti"], expires_at=datetime.fromtimestamp(claims["exp"], UTC)
    )
    await dead_redis.aclose()
    assert not copied  # in PostgreSQL only
    async with ingress_app(without_redis, engine=engine) as app, ingress_client(app) as client:
        _assert_unauthorized(await _read(client, FIRST.sign(claims)))
        assert (await _read(client, FIRST.sign())).status_code == 200


async def test_redis_restarted_empty_reads_postgresql_and_rebuilds_its_copy(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    claims = valid_claims()
    dead_redis = fail_fast_client(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.2)
    await TokenRevocations(dead_redis, engine, timeout=0.2).revoke(
        claims["jti"], expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    await dead_redis.aclose()
    redis = Redis.from_url(settings.redis)
    try:
        await redis.delete("hisho:jwt:revoked-synced")  # as after a restart with no data
        _assert_unauthorized(await _read(client, FIRST.sign(claims)))

        async def rebuilt() -> None:
            assert await redis.exists(redis_key(claims["jti"]))
            assert await redis.ttl(redis_key(claims["jti"])) > 3000

        await eventually(rebuilt, deadline=5)
        _assert_unauthorized(await _read(client, FIRST.sign(claims)))  # now from Redis
    finally:
        await redis.aclose()


async def test_revoking_again_keeps_the_later_expiry_in_both_stores(
    settings: Settings, engine: AsyncEngine
) -> None:
    jti, later = str(uuid4()), datetime.now(UTC) + timedelta(hours=2)
    redis = Redis.from_url(settings.redis)
    revocations = TokenRevocations(redis, engine, timeout=1)
    try:
        assert await revocations.revoke(jti, expires_at=later, reason="first")
        assert await revocations.revoke(jti, expires_at=later - timedelta(hours=1), reason="2nd")
        [stored] = [token for token in await revocations.list_revoked() if token.jti == jti]
        assert (stored.expires_at, stored.reason) == (later, "first")
        assert await redis.ttl(redis_key(jti)) > 6000
        assert await revocations.is_revoked(jti)
    finally:
        await redis.aclose()


async def test_with_redis_and_postgresql_down_a_token_with_an_id_is_a_503(
    server: JwksServer,
) -> None:
    dead_redis = fail_fast_client(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.2)
    dead_db = create_async_engine(f"postgresql+asyncpg://hisho@127.0.0.1:{closed_port()}/x")
    jwks = JwksKeys.from_url(
        server.url, timeout=2, algorithms=["RS256", "ES256"], ttl=300, refetch_interval=1
    )
    revocations = TokenRevocations(dead_redis, dead_db, timeout=0.2)
    verifier = JwtVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks, revocations=revocations)
    try:
        with pytest.raises(AuthUnavailableError):
            await verifier.verify(FIRST.sign())
    finally:
        await dead_redis.aclose()
        await dead_db.dispose()


async def test_an_unreachable_jwks_server_is_a_503_for_a_key_never_seen(
    settings: Settings, engine: AsyncEngine
) -> None:
    async with jwks_server(FIRST) as down:
        down.status = 503
        async with (
            ingress_app(_jwt_settings(settings, down), engine=engine) as app,
            ingress_client(app) as client,
        ):
            response = await _read(client, FIRST.sign())
    assert response.status_code == 503
    assert response.json()["type"].endswith("/auth-unavailable")


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hisho", "tokens", *args],
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
