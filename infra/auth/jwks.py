"""An identity provider's signing keys, read from its JWKS URL and cached by key id (`kid`).

A `kid` the cache does not hold refetches the document at once, so a rotated-in key works
without a restart; but at most one fetch starts per `refetch_interval`, however many tokens
ask and however many unknown kids they name: forged tokens cannot become a fetch storm
against the provider. While the provider cannot be reached the keys already fetched keep
working; a key that never was fetched cannot be told from a forged one, so it is
`JwksUnavailableError` (the ingress answers 503) rather than a refusal.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING, get_args

import httpx
import structlog
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKSetError

from infra.settings import JwtAlgorithm

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

log = structlog.get_logger("hisho.auth.jwks")
ASYMMETRIC = frozenset(get_args(JwtAlgorithm))
_MAX_DOCUMENT_BYTES = 512 * 1024


class JwksUnavailableError(Exception):
    """The JWKS could not be fetched, and no key for the token's `kid` was ever fetched."""


class JwksDocumentError(Exception):
    """The JWKS URL answered with something that is not a usable JWK set."""


async def fetch_jwks(url: str, *, within: float) -> object:
    """GET a JWKS document (no redirects: the configured URL is the one trusted)."""
    async with httpx.AsyncClient(timeout=within, follow_redirects=False) as client:
        response = await client.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > _MAX_DOCUMENT_BYTES:
        raise JwksDocumentError(f"the JWKS document is over {_MAX_DOCUMENT_BYTES} bytes")
    return response.json()


def signing_keys(document: object, algorithms: Iterable[str]) -> dict[str, PyJWK]:
    """The keys of a JWKS document usable here: a `kid`, use `sig`, an allowed algorithm.

    Each PyJWK is bound to one algorithm (the key's `alg`, else its type's default) and
    PyJWT verifies a token only with that algorithm, so a symmetric (`oct`) key or a key of
    another algorithm in the set is dropped here rather than ever being tried.
    """
    allowed = frozenset(algorithms)
    if not isinstance(document, dict):
        raise JwksDocumentError("the JWKS document is not a JSON object")
    try:
        keys = PyJWKSet.from_dict(document).keys
    except PyJWKSetError as exc:
        raise JwksDocumentError(str(exc)) from exc
    return {
        key.key_id: key
        for key in keys
        if key.key_id and key.public_key_use in {None, "sig"} and key.algorithm_name in allowed
    }


class JwksKeys:
    """The signing keys at a JWKS URL: cached for `ttl` s, refetched for an unknown `kid`."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[object]],
        *,
        algorithms: Iterable[str],
        ttl: float,
        refetch_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._algorithms = frozenset(algorithms)
        if not self._algorithms or not self._algorithms <= ASYMMETRIC:
            raise ValueError(f"JWKS keys verify asymmetric algorithms only: {ASYMMETRIC}")
        self._fetch = fetch
        self._ttl = ttl
        self._interval = refetch_interval
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # the last fetch that worked
        self._tried_at = float("-inf")  # the last fetch started, whatever its end
        self._failed = False  # whether that last fetch failed
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float,
        algorithms: Iterable[str],
        ttl: float,
        refetch_interval: float,
    ) -> JwksKeys:
        """Keys fetched from `url` over HTTP(S)."""
        return cls(
            partial(fetch_jwks, url, within=timeout),
            algorithms=algorithms,
            ttl=ttl,
            refetch_interval=refetch_interval,
        )

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms a token may name to be checked against these keys."""
        return self._algorithms

    async def key(self, kid: str) -> PyJWK | None:
        """The key with id `kid`, or None when the provider does not publish it.

        Raises `JwksUnavailableError` when the last fetch failed and `kid` is not cached.
        """
        if self._due(kid) or (kid not in self._keys and self._lock.locked()):
            # One fetch at a time. An unknown kid waits for the fetch under way (it may bring
            # that key); whoever waited re-checks, and finds a fetch no longer due.
            async with self._lock:
                if self._due(kid):
                    await self._refresh()
        key = self._keys.get(kid)
        if key is None and self._failed:
            raise JwksUnavailableError("the JWKS URL cannot be read")
        return key

    def _due(self, kid: str) -> bool:
        now = self._clock()
        if now - self._tried_at < self._interval:
            return False
        stale = self._fetched_at is None or now - self._fetched_at >= self._ttl
        return stale or kid not in self._keys

    async def _refresh(self) -> None:
        self._tried_at = self._clock()
        try:
            keys = signing_keys(await self._fetch(), self._algorithms)
        except (httpx.HTTPError, ValueError, JwksDocumentError) as exc:
            self._failed = True
            log.warning("jwks fetch failed", error=repr(exc), cached_keys=len(self._keys))
            return
        self._keys, self._fetched_at, self._failed = keys, self._clock(), False
        log.info("jwks fetched", kids=sorted(keys))
