"""API keys: `hisho_<id>_<secret>`, stored as a SHA-256 of the secret, found by `<id>`."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text, update

from events import Actor, ActorKind
from infra.auth.scopes import Principal, Scope, parse_scopes
from infra.db.key_tables import api_keys

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

TOKEN_PREFIX = "hisho_"  # noqa: S105  (a prefix, not a secret)
_TOKEN = re.compile(r"^hisho_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})$")
# Serialises "is there an admin key yet?" across processes starting at the same time.
_BOOTSTRAP_LOCK = 0x68697368_6B657973  # "hishkeys"


@dataclass(frozen=True)
class ApiKey:
    """One API key as stored (never with its secret)."""

    id: str
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the key still authenticates."""
        return self.revoked_at is None

    def principal(self) -> Principal:
        """Return the principal a request made with this key acts as."""
        actor = Actor(kind=ActorKind.API_KEY, id=self.id, admin=Scope.ADMIN in self.scopes)
        return Principal(actor, self.scopes)


@dataclass(frozen=True)
class IssuedKey:
    """A key just created, with the only copy of its token."""

    key: ApiKey
    token: str


def parse_token(token: str) -> tuple[str, str] | None:
    """`(key_id, secret)` of a well-formed token, else None."""
    match = _TOKEN.match(token)
    return (match.group(1), match.group(2)) if match else None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _row_to_key(row: Any) -> ApiKey:  # noqa: ANN401  (a SQLAlchemy row)
    return ApiKey(
        id=row.id,
        name=row.name,
        scopes=parse_scopes(list(row.scopes)),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class SqlApiKeyStore:
    """API keys in PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, *, scopes: Iterable[Scope], name: str = "") -> IssuedKey:
        """Create a key with `scopes`; the returned token is not stored anywhere."""
        async with self._engine.begin() as conn:
            return await self._insert(conn, frozenset(scopes), name)

    async def authenticate(self, token: str) -> ApiKey | None:
        """Return the active key of a token; None if malformed, unknown, wrong or revoked."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is None or not hmac.compare_digest(row.secret_hash, _digest(secret)):
            return None
        key = _row_to_key(row)
        return key if key.active else None

    async def list_keys(self) -> list[ApiKey]:
        """Every key, oldest first, revoked ones included."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        async with self._engine.connect() as conn:
            return [_row_to_key(row) for row in await conn.execute(query)]

    async def revoke(self, key_id: str) -> bool:
        """Revoke an active key; False when there is no such active key."""
        statement = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(statement)).rowcount == 1

    async def create_admin_if_none(self, *, name: str) -> IssuedKey | None:
        """Create an admin key unless an active one exists (safe against concurrent starts)."""
        async with self._engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _BOOTSTRAP_LOCK})
            existing = await conn.execute(
                select(api_keys.c.id)
                .where(api_keys.c.revoked_at.is_(None), api_keys.c.scopes.any(Scope.ADMIN.value))
                .limit(1)
            )
            if existing.first() is not None:
                return None
            return await self._insert(conn, frozenset({Scope.ADMIN}), name)

    @staticmethod
    async def _insert(conn: AsyncConnection, scopes: frozenset[Scope], name: str) -> IssuedKey:
        if not scopes:
            raise ValueError("an API key needs at least one scope")
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        row = (
            await conn.execute(
                api_keys.insert()
                .values(
                    id=key_id,
                    name=name,
                    secret_hash=_digest(secret),
                    scopes=sorted(scope.value for scope in scopes),
                )
                .returning(*api_keys.c)
            )
        ).one()
        return IssuedKey(_row_to_key(row), f"{TOKEN_PREFIX}{key_id}_{secret}")


async def ensure_bootstrap_admin_key(
    store: SqlApiKeyStore, *, name: str = "local admin"
) -> str | None:
    """On first start: create a local admin key and return its token; None if one exists."""
    issued = await store.create_admin_if_none(name=name)
    return issued.token if issued else None
