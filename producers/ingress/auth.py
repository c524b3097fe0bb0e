"""Authentication, scopes and the per-key rate limit, as one FastAPI dependency per scope set."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog
from fastapi import Request  # noqa: TC002  (FastAPI reads the dependency's annotation)

from infra.auth import AuthUnavailableError
from infra.auth.api_keys import TOKEN_PREFIX
from producers.ingress.command_spec import require_json
from producers.ingress.problems import ProblemError, forbidden, retry_after, unauthorized

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from infra.auth import JwtVerifier, Principal, Scope
    from producers.ingress.ports import KeyStore
    from producers.ingress.rate_limit import RateLimiter

log = structlog.get_logger("hisho.ingress.auth")
_CACHE_MAX = 10_000
_LOOKUP_TIMEOUT = 2.0


class Authenticator:
    """Turns a bearer token into a principal; key lookups are cached for `cache_seconds`.

    Revoking a key therefore takes effect within `cache_seconds`. While PostgreSQL cannot
    answer, keys seen before keep working from the cache; unknown ones get a 503. A JWT is
    verified on every request (its revocation is looked up each time); a 503 too when its
    keys or the revocation list cannot be read.
    """

    def __init__(
        self,
        keys: KeyStore,
        *,
        jwt: JwtVerifier | None,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._jwt = jwt
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, token: str) -> Principal | None:
        """Return the principal of a valid API key or JWT, else None."""
        if token.startswith(TOKEN_PREFIX):
            return await self._api_key(token)
        if self._jwt is not None and token.count(".") == 2:  # noqa: PLR2004  (header.claims.sig)
            try:
                return await self._jwt.verify(token)
            except AuthUnavailableError as exc:
                log.warning("jwt verification unavailable", error=str(exc))
                raise _auth_unavailable("the token's signing keys or revocation list") from exc
        return None

    async def _api_key(self, token: str) -> Principal | None:
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            async with asyncio.timeout(_LOOKUP_TIMEOUT):
                key = await self._keys.authenticate(token)
        except Exception as exc:  # noqa: BLE001  (any driver error: the database is unusable)
            return self._stale(cached, exc)
        principal = key.principal() if key is not None else None
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[token] = (now, principal)
        return principal

    @staticmethod
    def _stale(cached: tuple[float, Principal | None] | None, exc: Exception) -> Principal | None:
        if cached is not None and cached[1] is not None:
            return cached[1]
        log.warning("api key lookup failed", error=repr(exc))
        raise _auth_unavailable("the key store")


def _auth_unavailable(what: str) -> ProblemError:
    return ProblemError(
        503,
        "auth-unavailable",
        "Authentication unavailable",
        f"{what} cannot be reached",
        headers=retry_after(1),
    )


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("send `Authorization: Bearer <key>`", invalid=False)
    return token.strip()


def guard(
    authenticator: Authenticator, limiter: RateLimiter, *scopes: Scope, json_body: bool = False
) -> Callable[[Request], Awaitable[Principal]]:
    """Build the dependency guarding a route: 401, 403, 429 and (with `json_body`) 415.

    It authenticates, requires any of `scopes`, rate-limits, and refuses a non-JSON body.
    One plain dependency reading the request itself: it is on every request's hot path.
    OpenAPI learns about the bearer scheme from `problems.finish_openapi`.
    """

    async def authenticated(request: Request) -> Principal:
        principal = await admit(
            authenticator, limiter, scopes, request.headers.get("authorization")
        )
        if json_body:
            await require_json(request)
        return principal

    return authenticated


async def admit(
    authenticator: Authenticator,
    limiter: RateLimiter,
    scopes: tuple[Scope, ...],
    authorization: str | None,
) -> Principal:
    """Authenticate (401), require any of `scopes` (403) and count one request (429)."""
    principal = await authenticator.authenticate(_bearer_token(authorization))
    if principal is None:
        raise unauthorized("the bearer credentials are not valid", invalid=True)
    if not any(principal.allows(scope) for scope in scopes):
        raise forbidden(" or ".join(scope.value for scope in scopes))
    await limiter.check(principal.caller)
    return principal
