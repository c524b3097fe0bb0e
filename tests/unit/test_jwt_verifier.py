"""JWT verification with in-memory keys: claims to principal, algorithm confusion, revocation."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from jwt import PyJWK

from events import ActorKind
from infra.auth import AuthUnavailableError, JwtVerifier, Scope
from infra.auth.api_keys import ApiKey
from infra.auth.jwks import JwksUnavailableError
from infra.auth.jwt import principal_from_claims
from infra.auth.revocation import RevocationUnavailableError
from producers.ingress.auth import Authenticator
from producers.ingress.problems import ProblemError
from tests.ingress_fakes import FakeKeyStore
from tests.jwt_support import AUDIENCE, ISSUER, SigningKey, confusion_tokens, valid_claims

RSA, EC = SigningKey.rsa(), SigningKey.ec()
SECRET = "a-shared-secret-that-is-long-enough-for-hs256"


class FakeSigningKeys:
    """A JWKS in memory; `down` makes every unknown kid unavailable."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = {key.kid: PyJWK(key.jwk()) for key in keys}
        self.down = False

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset({"RS256", "ES256"})

    async def key(self, kid: str) -> PyJWK | None:
        if kid not in self.keys and self.down:
            raise JwksUnavailableError("down")
        return self.keys.get(kid)


class FakeRevocations:
    def __init__(self, *revoked: str) -> None:
        self.revoked = set(revoked)
        self.down = False
        self.asked: list[str] = []

    async def is_revoked(self, jti: str) -> bool:
        self.asked.append(jti)
        if self.down:
            raise RevocationUnavailableError("down")
        return jti in self.revoked


def _verifier(revocations: FakeRevocations | None = None, **kwargs: Any) -> JwtVerifier:
    return JwtVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks=kwargs.pop("jwks", FakeSigningKeys(RSA, EC)),
        revocations=revocations or FakeRevocations(),
        **kwargs,
    )


def test_claims_map_to_a_user_principal_named_by_issuer_and_subject() -> None:
    principal = principal_from_claims({"iss": ISSUER, "sub": "alice", "scope": "state:read"})
    assert principal is not None
    assert principal.actor.kind is ActorKind.USER
    assert principal.actor.principal == "user:https://idp.test/alice"
    assert principal.caller == "user:https://idp.test/alice"
    assert principal.scopes == {Scope.STATE_READ}
    assert not principal.actor.admin


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({"scope": "commands:write state:read bogus"}, {Scope.COMMANDS_WRITE, Scope.STATE_READ}),
        ({"scp": ["events:read", "bogus", 7]}, {Scope.EVENTS_READ}),
        ({"scp": "state:read"}, {Scope.STATE_READ}),
        ({"scope": "state:read", "scp": ["events:read"]}, {Scope.STATE_READ, Scope.EVENTS_READ}),
        ({"scope": 42}, set()),
        ({}, set()),
    ],
)
def test_scopes_come_from_scope_or_scp_and_unknown_names_are_ignored(
    claims: dict[str, Any], scopes: set[Scope]
) -> None:
    principal = principal_from_claims({"iss": ISSUER, "sub": "bob", **claims})
    assert principal is not None
    assert principal.scopes == scopes


def test_the_admin_scope_makes_an_admin_actor_for_tokens_and_api_keys() -> None:
    principal = principal_from_claims({"iss": ISSUER, "sub": "root", "scp": ["admin"]})
    assert principal is not None
    assert principal.actor.admin
    key = ApiKey("00000000000000a1", "", frozenset({Scope.ADMIN}), datetime.now(UTC), None)
    assert key.principal().actor.admin
    assert key.principal().caller == "key:00000000000000a1"
    writer = ApiKey("00000000000000a2", "", frozenset({Scope.COMMANDS_WRITE}), key.created_at, None)
    assert not writer.principal().actor.admin


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "alice"},
        {"iss": ISSUER},
        {"iss": ISSUER, "sub": ""},
        {"iss": ISSUER, "sub": 7},
        {"iss": ISSUER, "sub": "line\nbreak"},
        {"iss": ISSUER, "sub": "x" * 2_100},
    ],
)
def test_claims_without_a_usable_issuer_and_subject_have_no_principal(
    claims: dict[str, Any],
) -> None:
    assert principal_from_claims(claims) is None


async def test_tokens_signed_by_either_jwks_key_are_accepted() -> None:
    verifier = _verifier()
    for key in (RSA, EC):
        principal = await verifier.verify(key.sign(valid_claims(sub="carol")))
        assert principal is not None
        assert principal.actor.principal == "user:https://idp.test/carol"


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": -5},  # times are seconds from when the test runs (not from collection)
        {"exp": None},
        {"nbf": 600},
        {"aud": "someone-else"},
        {"aud": None},
        {"iss": "https://evil.test"},
        {"sub": None},
        {"jti": 17},
        {"jti": ""},
    ],
)
async def test_tokens_with_bad_claims_are_refused(claims: dict[str, Any]) -> None:
    now = int(time.time())
    timed = {k: now + v if k in {"exp", "nbf"} and v is not None else v for k, v in claims.items()}
    token = RSA.sign({k: v for k, v in valid_claims(**timed).items() if v is not None})
    assert await _verifier().verify(token) is None


async def test_a_token_whose_kid_is_not_published_or_missing_is_refused() -> None:
    stranger = SigningKey.rsa()
    assert await _verifier().verify(stranger.sign()) is None
    no_kid = jwt.encode(valid_claims(), RSA.private, algorithm="RS256")
    assert await _verifier().verify(no_kid) is None


async def test_a_token_must_use_the_algorithm_its_key_is_bound_to() -> None:
    # An EC-signed token claiming the RSA key's kid, and an RS256 header over an EC key.
    token = jwt.encode(valid_claims(), EC.private, algorithm="ES256", headers={"kid": RSA.kid})
    assert await _verifier().verify(token) is None
    assert await _verifier().verify(RSA.sign(kid=EC.kid)) is None


@pytest.mark.parametrize("attack", sorted(confusion_tokens(RSA)))
async def test_algorithm_confusion_is_refused_with_or_without_a_shared_secret(attack: str) -> None:
    token = confusion_tokens(RSA)[attack]
    assert await _verifier().verify(token) is None
    assert await _verifier(secret=SECRET).verify(token) is None


async def test_an_hs256_token_is_checked_against_the_shared_secret_only() -> None:
    verifier = _verifier(secret=SECRET)
    good = jwt.encode(valid_claims(), SECRET, algorithm="HS256")
    assert await verifier.verify(good) is not None
    other = jwt.encode(valid_claims(), "another-secret-also-long-enough-for-hs", algorithm="HS256")
    assert await verifier.verify(other) is None
    assert await _verifier().verify(good) is None  # no secret configured: HS256 is refused


async def test_a_revoked_token_id_is_refused_and_tokens_without_an_id_are_not_looked_up() -> None:
    revocations = FakeRevocations("revoked-1")
    verifier = _verifier(revocations)
    assert await verifier.verify(RSA.sign(valid_claims(jti="revoked-1"))) is None
    assert await verifier.verify(RSA.sign(valid_claims(jti="fine-1"))) is not None
    claims = valid_claims()
    del claims["jti"]
    assert await verifier.verify(RSA.sign(claims)) is not None
    assert revocations.asked == ["revoked-1", "fine-1"]


async def test_an_unreadable_revocation_list_or_jwks_is_a_503_not_an_acceptance() -> None:
    revocations = FakeRevocations()
    revocations.down = True
    with pytest.raises(AuthUnavailableError):
        await _verifier(revocations).verify(RSA.sign())
    jwks = FakeSigningKeys(RSA)
    jwks.down = True
    auth = Authenticator(FakeKeyStore(), jwt=_verifier(jwks=jwks), cache_seconds=5)
    with pytest.raises(ProblemError) as caught:
        await auth.authenticate(SigningKey.rsa().sign())
    assert caught.value.problem.status == 503
    assert await auth.authenticate(RSA.sign()) is not None


async def test_the_authenticator_refuses_any_malformed_jwt() -> None:
    auth = Authenticator(FakeKeyStore(), jwt=_verifier(), cache_seconds=5)
    for token in ("a.b.c", "..", "eyJhbGciOiJSUzI1NiJ9.e30.", RSA.sign()[:-4] + "AAAA"):
        assert await auth.authenticate(token) is None
