"""JWT bearer tokens: signature, issuer, audience, expiry, revocation; claims to a principal.

A token's `alg` header chooses where its key may come from, and nothing else does:
an asymmetric algorithm allowed by `HISHO_JWT_ALGORITHMS` means a JWKS key found by `kid`
(each PyJWK verifies with its own algorithm only); `HS256` means the configured shared
secret, never a public key; anything else (`none` included) is refused. So a token signed
with HS256 using a published public key as the secret cannot verify: algorithm confusion
has no path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import jwt
from pydantic import TypeAdapter, ValidationError

from events import Actor, ActorKind
from events.fields import Principal as PrincipalId
from infra.auth.jwks import JwksKeys, JwksUnavailableError
from infra.auth.revocation import RevocationUnavailableError
from infra.auth.scopes import Principal, Scope, parse_scopes

if TYPE_CHECKING:
    from jwt import PyJWK

    from infra.settings import Settings

_PRINCIPAL_ID: TypeAdapter[str] = TypeAdapter(PrincipalId)
_HS256 = "HS256"


class AuthUnavailableError(Exception):
    """A token's key or its revocation state cannot be looked up now (retry later)."""


class SigningKeys(Protocol):
    """Public keys by `kid` (a JWKS)."""

    @property
    def algorithms(self) -> frozenset[str]:
        """The asymmetric algorithms a token may name."""
        ...

    async def key(self, kid: str) -> PyJWK | None:
        """The key with id `kid`, or None; raises `JwksUnavailableError` when unknown."""
        ...


class Revocations(Protocol):
    """The revoked token ids."""

    async def is_revoked(self, jti: str) -> bool:
        """Whether `jti` was revoked; raises `RevocationUnavailableError` when unknown."""
        ...


def principal_from_claims(claims: dict[str, Any]) -> Principal | None:
    """The principal of verified claims: `user:<iss>/<sub>`, scopes from `scope` or `scp`.

    `scope` is a space-separated string (RFC 8693), `scp` a list (or string); unknown scope
    names are ignored. None when `iss` or `sub` is missing or makes no valid principal id.
    """
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not (isinstance(issuer, str) and issuer and isinstance(subject, str) and subject):
        return None
    actor_id = f"{issuer}/{subject}"
    try:
        _PRINCIPAL_ID.validate_python(f"user:{actor_id}")
    except ValidationError:
        return None  # too long, or control characters
    scopes = _scopes(claims.get("scope")) | _scopes(claims.get("scp"))
    actor = Actor(kind=ActorKind.USER, id=actor_id, admin=Scope.ADMIN in scopes)
    return Principal(actor, scopes)


def _scopes(value: object) -> frozenset[Scope]:
    if isinstance(value, str):
        return parse_scopes(value)
    if isinstance(value, list | tuple):
        return parse_scopes([name for name in value if isinstance(name, str)])
    return frozenset()


class JwtVerifier:
    """Verifies bearer JWTs against a JWKS (and/or an HS256 secret) and a revocation list."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: SigningKeys | None = None,
        secret: str | None = None,
        revocations: Revocations | None = None,
        leeway: float = 0.0,
    ) -> None:
        if jwks is None and not secret:
            raise ValueError("a JwtVerifier needs a JWKS, an HS256 secret, or both")
        self._issuer = issuer
        self._audience = audience
        self._jwks = jwks
        self._secret = secret
        self._revocations = revocations
        self._leeway = leeway

    @classmethod
    def from_settings(cls, settings: Settings, *, revocations: Revocations) -> JwtVerifier | None:
        """The verifier `HISHO_JWT_*` configure; None when neither a JWKS URL nor a key is set."""
        if not (settings.jwt_issuer and settings.jwt_audience):
            return None
        if settings.jwt_jwks_url is None and settings.jwt_key is None:
            return None
        jwks = None
        if settings.jwt_jwks_url is not None:
            jwks = JwksKeys.from_url(
                str(settings.jwt_jwks_url),
                timeout=settings.jwt_jwks_timeout,
                algorithms=settings.jwt_algorithms,
                ttl=settings.jwt_jwks_cache_seconds,
                refetch_interval=settings.jwt_jwks_refetch_seconds,
            )
        return cls(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            jwks=jwks,
            secret=settings.jwt_key.get_secret_value() if settings.jwt_key else None,
            revocations=revocations,
            leeway=settings.jwt_leeway_seconds,
        )

    async def verify(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None for any defect.

        Checked: the signature, `exp` (required), `nbf`, `iss`, `aud`, `sub` (required) and,
        when the token has a `jti`, that it is not revoked. Raises `AuthUnavailableError`
        when the keys or the revocation list cannot be read.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        key, algorithm = await self._key_for(header)
        if key is None or algorithm is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        principal = principal_from_claims(claims)
        if principal is None or await self._revoked(claims.get("jti")):
            return None
        return principal

    async def _key_for(self, header: dict[str, Any]) -> tuple[PyJWK | str | None, str | None]:
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm == _HS256 and self._secret:
            return self._secret, _HS256
        if self._jwks is None or algorithm not in self._jwks.algorithms:
            return None, None
        if not isinstance(kid, str) or not kid:
            return None, None
        try:
            return await self._jwks.key(kid), algorithm
        except JwksUnavailableError as exc:
            raise AuthUnavailableError(str(exc)) from exc

    async def _revoked(self, jti: object) -> bool:
        if jti is None:
            return False  # a token without an id cannot be revoked one by one
        if not isinstance(jti, str) or not jti:
            return True  # a malformed id is refused, never looked up
        if self._revocations is None:
            return False
        try:
            return await self._revocations.is_revoked(jti)
        except RevocationUnavailableError as exc:
            raise AuthUnavailableError(str(exc)) from exc
