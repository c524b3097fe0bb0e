"""The JWKS key cache with a fake clock and a fake fetch: TTL, one bounded refetch, outages."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from infra.auth.jwks import JwksKeys, JwksUnavailableError, signing_keys
from tests.jwt_support import SigningKey

RSA, EC, ROTATED = SigningKey.rsa(), SigningKey.ec(), SigningKey.rsa()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeJwksEndpoint:
    """What the provider serves; counts fetches, fails on demand, can hold a fetch open."""

    def __init__(self, *keys: SigningKey) -> None:
        self.document: dict[str, Any] = {"keys": [key.jwk() for key in keys]}
        self.fetches = 0
        self.failing = False
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> object:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise httpx.ConnectError("provider down")
        return self.document


def _keys(endpoint: FakeJwksEndpoint, clock: FakeClock, **kwargs: Any) -> JwksKeys:
    options = {"algorithms": ["RS256", "ES256"], "ttl": 300.0, "refetch_interval": 5.0}
    return JwksKeys(endpoint, clock=clock, **{**options, **kwargs})


async def test_keys_are_fetched_once_and_served_from_the_cache_until_the_ttl() -> None:
    endpoint, clock = FakeJwksEndpoint(RSA, EC), FakeClock()
    keys = _keys(endpoint, clock)
    assert (await keys.key(RSA.kid)) is not None
    assert (await keys.key(EC.kid)) is not None
    clock.now += 299
    await keys.key(RSA.kid)
    assert endpoint.fetches == 1
    clock.now += 1
    await keys.key(RSA.kid)
    assert endpoint.fetches == 2


async def test_an_unknown_kid_refetches_once_and_finds_a_rotated_in_key() -> None:
    endpoint, clock = FakeJwksEndpoint(RSA), FakeClock()
    keys = _keys(endpoint, clock)
    await keys.key(RSA.kid)
    endpoint.document = {"keys": [ROTATED.jwk()]}
    clock.now += 5
    rotated = await keys.key(ROTATED.kid)
    assert rotated is not None
    assert rotated.key_id == ROTATED.kid
    assert endpoint.fetches == 2


async def test_many_unknown_kids_cause_at_most_one_fetch_per_interval() -> None:
    endpoint, clock = FakeJwksEndpoint(RSA), FakeClock()
    keys = _keys(endpoint, clock)
    await keys.key(RSA.kid)
    clock.now += 5
    for n in range(50):
        assert await keys.key(f"forged-{n}") is None
        clock.now += 0.01
    assert endpoint.fetches == 2
    clock.now += 5
    assert await keys.key("forged-again") is None
    assert endpoint.fetches == 3


async def test_concurrent_unknown_kids_share_one_fetch() -> None:
    endpoint, clock = FakeJwksEndpoint(RSA), FakeClock()
    endpoint.gate = asyncio.Event()
    keys = _keys(endpoint, clock)
    lookups = [asyncio.create_task(keys.key(f"kid-{n}")) for n in range(20)]
    lookups.append(asyncio.create_task(keys.key(RSA.kid)))
    await asyncio.sleep(0)
    endpoint.gate.set()
    found = await asyncio.gather(*lookups)
    assert endpoint.fetches == 1
    assert found[-1] is not None
    assert found[:-1] == [None] * 20


async def test_cached_keys_keep_working_while_the_provider_is_down() -> None:
    endpoint, clock = FakeJwksEndpoint(RSA), FakeClock()
    keys = _keys(endpoint, clock)
    await keys.key(RSA.kid)
    endpoint.failing, clock.now = True, clock.now + 301
    assert await keys.key(RSA.kid) is not None
    with pytest.raises(JwksUnavailableError):
        await keys.key(ROTATED.kid)
    clock.now += 1  # within the refetch interval: no new attempt, still unavailable
    with pytest.raises(JwksUnavailableError):
        await keys.key(ROTATED.kid)
    assert endpoint.fetches == 2
    endpoint.failing, clock.now = False, clock.now + 5
    assert await keys.key("still-unknown") is None


async def test_no_key_can_be_told_before_the_first_fetch_works() -> None:
    endpoint, clock = FakeJwksEndpoint(RSA), FakeClock()
    endpoint.failing = True
    with pytest.raises(JwksUnavailableError):
        await _keys(endpoint, clock).key(RSA.kid)


async def test_a_broken_document_keeps_the_keys_fetched_before() -> None:
    endpoint, clock = FakeJwksEndpoint(RSA), FakeClock()
    keys = _keys(endpoint, clock)
    await keys.key(RSA.kid)
    endpoint.document, clock.now = {"keys": "nope"}, clock.now + 301
    assert await keys.key(RSA.kid) is not None


def test_only_signing_keys_of_allowed_algorithms_with_a_kid_are_kept() -> None:
    document = {
        "keys": [
            RSA.jwk(),
            EC.jwk(),
            {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "hmac"},
            {**ROTATED.jwk(), "use": "enc"},
            {k: v for k, v in SigningKey.rsa().jwk().items() if k != "kid"},
            {**SigningKey.rsa().jwk(), "alg": "RS512", "kid": "rs512"},
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},
        ]
    }
    assert set(signing_keys(document, ["RS256", "ES256"])) == {RSA.kid, EC.kid}
    assert set(signing_keys(document, ["ES256"])) == {EC.kid}


def test_symmetric_or_none_algorithms_are_never_allowed_for_jwks_keys() -> None:
    for algorithms in (["HS256"], ["RS256", "none"], []):
        with pytest.raises(ValueError, match="asymmetric"):
            JwksKeys(FakeJwksEndpoint(), algorithms=algorithms, ttl=1, refetch_interval=1)
