"""Authentication: API keys (hashed, scoped) and optional JWT bearer tokens (JWKS, revocable)."""

from infra.auth.api_keys import (
    ApiKey,
    IssuedKey,
    SqlApiKeyStore,
    ensure_bootstrap_admin_key,
    parse_token,
)
from infra.auth.jwt import AuthUnavailableError, JwtVerifier
from infra.auth.revocation import TokenRevocations
from infra.auth.scopes import Principal, Scope

__all__ = [
    "ApiKey",
    "AuthUnavailableError",
    "IssuedKey",
    "JwtVerifier",
    "Principal",
    "Scope",
    "SqlApiKeyStore",
    "TokenRevocations",
    "ensure_bootstrap_admin_key",
    "parse_token",
]
