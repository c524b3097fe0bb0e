"""`SqlIngressFallback` on the real PostgreSQL: atomic claims, the processor's record first,
expiry, the bounded sweep, and a fast `FallbackUnavailableError` without PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from infra.db.ingress_fallback import FallbackUnavailableError, SqlIngressFallback
from infra.db.ingress_tables import ingress_accepted, ingress_idempotency
from infra.db.tables import command_status
from infra.redis_store import Claim
from tests.ingress_support import closed_port

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


async def test_racing_claims_of_one_key_give_exactly_one_new(engine: AsyncEngine) -> None:
    fallback, command_id = SqlIngressFallback(engine), uuid4()
    claims = await asyncio.gather(*(fallback.claim(command_id, "h1", ttl=60) for _ in range(10)))
    assert claims.count(Claim.NEW) == 1
    assert set(claims) == {Claim.NEW, Claim.IN_FLIGHT}
    assert await fallback.claim(command_id, "h2", ttl=60) is Claim.CONFLICT
    await fallback.record_accepted(command_id, "SubmitPlan", ttl=60, idempotent=True)
    assert await fallback.claim(command_id, "h1", ttl=60) is Claim.PUBLISHED
    assert await fallback.held(command_id, "h2") is Claim.CONFLICT
    assert await fallback.held(uuid4(), "h1") is None
    assert await fallback.accepted_type(command_id) == "SubmitPlan"


async def test_a_released_claim_is_new_again(engine: AsyncEngine) -> None:
    fallback, command_id = SqlIngressFallback(engine), uuid4()
    await fallback.claim(command_id, "h1", ttl=60)
    await fallback.release(command_id)
    assert await fallback.claim(command_id, "h2", ttl=60) is Claim.NEW


async def test_the_processors_record_answers_before_the_fallback_table(
    engine: AsyncEngine,
) -> None:
    fallback, command_id = SqlIngressFallback(engine), uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            insert(command_status).values(
                command_id=command_id, type="SubmitPlan", status="processed", body_sha256="h1"
            )
        )
    assert await fallback.claim(command_id, "h1", ttl=60) is Claim.PUBLISHED
    assert await fallback.claim(command_id, "h2", ttl=60) is Claim.CONFLICT
    assert await _count(engine, command_id) == (0, 0)  # nothing written for it


async def test_an_expired_record_or_marker_counts_as_absent(engine: AsyncEngine) -> None:
    fallback, command_id = SqlIngressFallback(engine), uuid4()
    assert await fallback.claim(command_id, "h1", ttl=0) is Claim.NEW  # expires at once
    assert await fallback.claim(command_id, "h2", ttl=60) is Claim.NEW  # renewed for h2
    assert await fallback.claim(command_id, "h1", ttl=60) is Claim.CONFLICT
    await fallback.record_accepted(command_id, "SubmitPlan", ttl=0, idempotent=False)
    assert await fallback.accepted_type(command_id) is None


async def test_expired_rows_are_swept_in_bounded_batches(engine: AsyncEngine) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = [uuid4() for _ in range(3)]
    async with engine.begin() as conn:
        for command_id in expired:
            await conn.execute(
                insert(ingress_idempotency).values(
                    command_id=command_id, body_sha256="h", state="pending", expires_at=past
                )
            )
            await conn.execute(
                insert(ingress_accepted).values(
                    command_id=command_id, type="SubmitPlan", expires_at=past
                )
            )
    live = uuid4()
    fallback = SqlIngressFallback(engine)
    await fallback.claim(live, "h", ttl=60)  # a write sweeps (the first one at once)
    assert [await _count(engine, command_id) for command_id in expired] == [(0, 0)] * 3
    assert await _count(engine, live) == (1, 0)
    assert await fallback.holds_live_rows()


async def test_without_postgresql_every_call_fails_fast_with_one_error_type() -> None:
    dead = create_async_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{closed_port()}/none")
    fallback = SqlIngressFallback(dead, timeout=2.0)
    try:
        for call in (
            fallback.claim(uuid4(), "h", ttl=60),
            fallback.held(uuid4(), "h"),
            fallback.release(uuid4()),
            fallback.record_accepted(uuid4(), "SubmitPlan", ttl=60, idempotent=True),
            fallback.accepted_type(uuid4()),
            fallback.holds_live_rows(),
        ):
            with pytest.raises(FallbackUnavailableError):
                async with asyncio.timeout(10):  # a bound, not a measurement
                    await call
    finally:
        await dead.dispose()


async def _count(engine: AsyncEngine, command_id: UUID) -> tuple[int, int]:
    """(idempotency records, accepted markers) of a command."""
    async with engine.connect() as conn:
        records = await conn.scalar(
            select(func.count()).where(ingress_idempotency.c.command_id == command_id)
        )
        markers = await conn.scalar(
            select(func.count()).where(ingress_accepted.c.command_id == command_id)
        )
    return int(records or 0), int(markers or 0)
