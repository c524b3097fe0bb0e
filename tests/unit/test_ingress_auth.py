"""Authentication pieces with fakes: key cache, stale keys when the database is down, JWT."""

from __future__ import annotations

import time

import jwt
import pytest

from events import ActorKind
from infra.auth import JwtVerifier, Principal, Scope, parse_token
from infra.auth.scopes import parse_scopes
from producers.ingress.auth import Authenticator
from producers.ingress.problems import ProblemError
from tests.ingress_fakes import FakeKeyStore, fake_key

TOKEN, KEY = fake_key("00000000000000b1", Scope.COMMANDS_WRITE)
SECRET = "a-test-secret-that-is-long-enough-for-hs256"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _verifier() -> JwtVerifier:
    return JwtVerifier(secret=SECRET, issuer="https://idp.test", audience="hisho")


def _jwt(**claims: object) -> str:
    base = {
        "iss": "https://idp.test",
        "aud": "hisho",
        "sub": "alice",
        "exp": int(time.time()) + 60,
        "scope": "commands:write state:read",
    }
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


def test_tokens_parse_into_id_and_secret_only_when_well_formed() -> None:
    assert parse_token(TOKEN) == ("00000000000000b1", "s" * 43)
    assert parse_token("hisho_XYZ_" + "s" * 43) is None
    assert parse_token("hisho_00000000000000b1_short") is None


def test_admin_implies_every_scope_and_unknown_scope_names_are_dropped() -> None:
    principal = Principal(KEY.principal().actor, parse_scopes("admin bogus"))
    assert principal.scopes == {Scope.ADMIN}
    assert all(principal.allows(scope) for scope in Scope)
    assert not KEY.principal().allows(Scope.STATE_READ)


async def test_key_lookups_are_cached_for_the_configured_time() -> None:
    keys, clock = FakeKeyStore({TOKEN: KEY}), FakeClock()
    auth = Authenticator(keys, jwt=None, cache_seconds=5, clock=clock)
    first = await auth.authenticate(TOKEN)
    assert first is not None
    assert first.actor.kind is ActorKind.API_KEY
    assert first.actor.id == KEY.id
    await auth.authenticate(TOKEN)
    assert keys.lookups == 1
    clock.now += 6
    await auth.authenticate(TOKEN)
    assert keys.lookups == 2


async def test_known_keys_keep_working_while_the_database_is_down() -> None:
    keys, clock = FakeKeyStore({TOKEN: KEY}), FakeClock()
    auth = Authenticator(keys, jwt=None, cache_seconds=5, clock=clock)
    assert await auth.authenticate(TOKEN) is not None
    keys.failing, clock.now = True, clock.now + 60
    assert await auth.authenticate(TOKEN) is not None
    other, _ = fake_key("00000000000000b2", Scope.ADMIN)
    with pytest.raises(ProblemError) as caught:
        await auth.authenticate(other)
    assert caught.value.problem.status == 503


async def test_a_valid_jwt_becomes_a_user_with_its_scopes() -> None:
    auth = Authenticator(FakeKeyStore(), jwt=_verifier(), cache_seconds=5)
    principal = await auth.authenticate(_jwt())
    assert principal is not None
    assert principal.actor.principal == "user:https://idp.test/alice"
    assert principal.scopes == {Scope.COMMANDS_WRITE, Scope.STATE_READ}


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.test"},
        {"aud": "someone-else"},
        {"exp": int(time.time()) - 10},
        {"sub": ""},
    ],
)
async def test_a_jwt_with_wrong_claims_is_refused(claims: dict[str, object]) -> None:
    auth = Authenticator(FakeKeyStore(), jwt=_verifier(), cache_seconds=5)
    assert await auth.authenticate(_jwt(**claims)) is None


async def test_a_jwt_signed_with_another_key_is_refused() -> None:
    forged = jwt.encode(
        {"iss": "https://idp.test", "aud": "hisho", "sub": "mallory", "exp": time.time() + 60},
        "another-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    auth = Authenticator(FakeKeyStore(), jwt=_verifier(), cache_seconds=5)
    assert await auth.authenticate(forged) is None


async def test_jwts_are_refused_when_jwt_is_not_configured() -> None:
    auth = Authenticator(FakeKeyStore(), jwt=None, cache_seconds=5)
    assert await auth.authenticate(_jwt()) is None
