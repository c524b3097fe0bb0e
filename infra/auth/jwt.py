"""Optional JWT bearer tokens (issuer, audience and key from settings) mapped to scopes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jwt

from events import Actor, ActorKind
from infra.auth.scopes import Principal, parse_scopes

if TYPE_CHECKING:
    from infra.settings import Settings


class JwtVerifier:
    """Verifies a signed JWT; its `sub` becomes a user actor, its `scope` claim the scopes."""

    def __init__(self, *, key: str, algorithm: str, issuer: str, audience: str) -> None:
        self._key = key
        self._algorithm = algorithm
        self._issuer = issuer
        self._audience = audience

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """Build a verifier when JWT issuer, audience and key are all set, else return None."""
        if not (settings.jwt_key and settings.jwt_issuer and settings.jwt_audience):
            return None
        return cls(
            key=settings.jwt_key.get_secret_value(),
            algorithm=settings.jwt_algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )

    def verify(self, token: str) -> Principal | None:
        """Return the principal of a valid token (signature, exp, iss, aud, sub), else None."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        subject, scope = claims.get("sub"), claims.get("scope", "")
        if not isinstance(subject, str) or not subject or not isinstance(scope, str | list):
            return None
        return Principal(Actor(kind=ActorKind.USER, id=subject), parse_scopes(scope))
