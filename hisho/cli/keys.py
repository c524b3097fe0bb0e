"""`hisho keys create|list|revoke`: API keys for the HTTP ingress."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

import typer

from infra.auth import IssuedKey, Scope, SqlApiKeyStore
from infra.db.engine import create_engine
from infra.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")

app = typer.Typer(help="Create, list and revoke API keys (stored hashed; shown once).")


def _with_store(work: Callable[[SqlApiKeyStore], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(load_settings(), pool_size=1)
        try:
            return await work(SqlApiKeyStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command("create")
def create_command(
    scope: list[Scope] = typer.Option(..., "--scope", help="Repeat for several scopes."),
    name: str = typer.Option("", "--name", help="A label to recognise the key by."),
) -> None:
    """Create a key and print its token once (only its hash is stored)."""
    issued: IssuedKey = _with_store(lambda store: store.create(scopes=scope, name=name))
    print(f"key id: {issued.key.id}")
    print(f"scopes: {' '.join(sorted(issued.key.scopes))}")
    print(issued.token)


@app.command("list")
def list_command() -> None:
    """List every key: id, state, scopes, name (never the secret)."""
    keys = _with_store(lambda store: store.list_keys())
    for key in keys:
        state = "active" if key.active else "revoked"
        created = key.created_at.isoformat(timespec="seconds")
        print(f"{key.id}  {state:7}  {created}  {','.join(sorted(key.scopes)):40}  {key.name}")


@app.command("revoke")
def revoke_command(
    key_id: str = typer.Argument(..., help="The key id `hisho keys list` shows."),
) -> None:
    """Revoke a key (the ingress stops accepting it within its key-cache time)."""
    if not _with_store(lambda store: store.revoke(key_id)):
        print(f"hisho: no active key {key_id}")
        raise typer.Exit(1)
    print(f"revoked {key_id}")
