"""`hisho tokens revoke|revoked`: refuse JWTs by their id (`jti`) until they expire."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError

from infra.auth import TokenRevocations
from infra.auth.revocation import SYNC_SECONDS
from infra.db.engine import create_engine
from infra.redis_store import fail_fast_client
from infra.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

T = TypeVar("T")
_MAX_JTI = 256
_MAX_REASON = 1000

app = typer.Typer(help="Revoke JWTs by token id (jti) and list the revoked ones.")


def _with_revocations(work: Callable[[TokenRevocations], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = load_settings()
        engine = create_engine(settings, pool_size=1)
        redis = fail_fast_client(settings.redis, timeout=2.0)
        try:
            return await work(TokenRevocations(redis, engine, timeout=2.0))
        finally:
            await redis.aclose()
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (OSError, SQLAlchemyError) as exc:
        print(f"hisho: the database cannot be reached: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


def _fail(message: str) -> typer.Exit:
    print(f"hisho: {message}", file=sys.stderr)
    return typer.Exit(2)


def parse_expiry(text: str) -> datetime:
    """An ISO 8601 time with a UTC offset (`Z` or `+hh:mm`), as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--expires-at {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"--expires-at {text!r} needs a UTC offset (Z or +hh:mm)")
    return moment.astimezone(UTC)


@app.command("revoke")
def revoke_command(
    jti: str = typer.Argument(..., help="The token's `jti` claim."),
    expires_at: str = typer.Option(
        ...,
        "--expires-at",
        help="The token's expiry (its `exp`), ISO 8601 with an offset: kept until then.",
    ),
    reason: str = typer.Option("", "--reason", help="Why (kept with the revocation)."),
) -> None:
    """Revoke a token id: PostgreSQL first (the record), then Redis (the ingress's copy)."""
    if not jti.strip() or len(jti) > _MAX_JTI or not jti.isprintable():
        raise _fail(f"the token id must be 1-{_MAX_JTI} printable characters")
    if len(reason) > _MAX_REASON:
        raise _fail(f"--reason is over {_MAX_REASON} characters")
    try:
        expiry = parse_expiry(expires_at)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    copied = _with_revocations(
        lambda revocations: revocations.revoke(jti, expires_at=expiry, reason=reason)
    )
    print(f"revoked {jti} until {expiry.isoformat(timespec='seconds')}")
    if not copied:
        print(
            f"hisho: warning: Redis was not updated; the ingress refuses the token within "
            f"{SYNC_SECONDS} s (when its copy of the list is next rebuilt)",
            file=sys.stderr,
        )


@app.command("revoked")
def revoked_command() -> None:
    """List revoked token ids: jti, until, state, revoked at, reason."""
    now = datetime.now(UTC)
    for token in _with_revocations(lambda revocations: revocations.list_revoked()):
        state = "active" if token.expires_at > now else "expired"
        until = token.expires_at.isoformat(timespec="seconds")
        revoked = token.revoked_at.isoformat(timespec="seconds")
        print(f"{token.jti}  {until}  {state:7}  {revoked}  {token.reason}")
