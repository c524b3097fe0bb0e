"""API keys in PostgreSQL: hashed, scoped, revocable; the bootstrap admin key is made once."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

from sqlalchemy import select

from infra.auth import Scope, SqlApiKeyStore, ensure_bootstrap_admin_key, parse_token
from infra.db.key_tables import api_keys

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


async def test_a_key_is_stored_hashed_and_authenticates_until_revoked(engine: AsyncEngine) -> None:
    store = SqlApiKeyStore(engine)
    issued = await store.create(scopes=[Scope.STATE_READ, Scope.COMMANDS_WRITE], name="t")
    parsed = parse_token(issued.token)
    assert parsed is not None
    key_id, secret = parsed
    async with engine.connect() as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).one()
    assert row.secret_hash == hashlib.sha256(secret.encode()).digest()
    assert secret.encode() not in row.secret_hash
    key = await store.authenticate(issued.token)
    assert key is not None
    assert key.scopes == {Scope.STATE_READ, Scope.COMMANDS_WRITE}
    assert (
        await store.authenticate(issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B"))
        is None
    )
    assert await store.revoke(key_id)
    assert await store.authenticate(issued.token) is None
    assert not await store.revoke(key_id)
    listed = {k.id: k for k in await store.list_keys()}
    assert listed[key_id].revoked_at is not None


async def test_the_bootstrap_admin_key_is_created_once_even_when_racing(
    engine: AsyncEngine,
) -> None:
    store = SqlApiKeyStore(engine)
    tokens = await asyncio.gather(*(ensure_bootstrap_admin_key(store) for _ in range(3)))
    created = [token for token in tokens if token is not None]
    assert len(created) <= 1  # none when an earlier run already made one
    assert await ensure_bootstrap_admin_key(store) is None
    admins = [k for k in await store.list_keys() if k.active and Scope.ADMIN in k.scopes]
    assert admins
    if created:
        key = await store.authenticate(created[0])
        assert key is not None
        assert key.scopes == {Scope.ADMIN}
