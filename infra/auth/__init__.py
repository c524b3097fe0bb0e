"""Authentication: API keys (hashed, scoped) and optional JWT bearer tokens."""

from infra.auth.api_keys import (
    ApiKey,
    IssuedKey,
    SqlApiKeyStore,
    ensure_bootstrap_admin_key,
    parse_token,
)
from infra.auth.jwt import JwtVerifier
from infra.auth.scopes import Principal, Scope

__all__ = [
    "ApiKey",
    "IssuedKey",
    "JwtVerifier",
    "Principal",
    "Scope",
    "SqlApiKeyStore",
    "ensure_bootstrap_admin_key",
    "parse_token",
]
