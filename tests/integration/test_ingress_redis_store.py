"""The ingress's Redis store on a real Redis: atomic claims, counters and markers, batched by
the auto-pipeline, and a fast `RedisUnavailableError` when Redis is not there."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest

from infra.redis_store import Claim, RedisIngressStore, RedisUnavailableError
from producers.ingress.problems import ProblemError
from producers.ingress.rate_limit import RateLimiter
from tests.ingress_support import closed_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from infra.settings import Settings


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisIngressStore]:
    redis = RedisIngressStore.from_url(settings.redis, timeout=1.0)
    yield redis
    await redis.aclose()


async def test_racing_claims_of_one_key_give_exactly_one_new(store: RedisIngressStore) -> None:
    command_id = uuid4()
    claims = await asyncio.gather(*(store.claim(command_id, "h1", ttl=60) for _ in range(20)))
    assert claims.count(Claim.NEW) == 1
    assert set(claims) == {Claim.NEW, Claim.IN_FLIGHT}
    assert await store.claim(command_id, "h2", ttl=60) is Claim.CONFLICT


async def test_a_published_claim_is_replayed_and_a_released_one_is_new_again(
    store: RedisIngressStore,
) -> None:
    published, released = uuid4(), uuid4()
    await store.claim(published, "h", ttl=60)
    await store.record_accepted(published, "SubmitPlan", ttl=60, idempotent=True)
    assert await store.claim(published, "h", ttl=60) is Claim.PUBLISHED
    assert await store.accepted_type(published) == "SubmitPlan"
    await store.claim(released, "h", ttl=60)
    await store.release(released)
    assert await store.claim(released, "h", ttl=60) is Claim.NEW
    assert await store.accepted_type(uuid4()) is None


async def test_concurrent_hit_reports_add_up(store: RedisIngressStore) -> None:
    bucket = f"test:{uuid4()}"
    totals = await asyncio.gather(
        *(store.count_hits(bucket, 2, window=3600, index=2) for _ in range(10))
    )
    assert sorted(totals) == list(range(2, 21, 2))
    assert await store.count_hits(bucket, 0, window=3600, index=2) == 20
    assert await store.count_hits(bucket, 0, window=3600, index=3) == 0


async def test_two_processes_share_one_limit_through_redis(store: RedisIngressStore) -> None:
    caller = f"api_key:{uuid4().hex[:16]}"
    first = RateLimiter(store, limit=3, window=3600, sync_interval=0)
    second = RateLimiter(store, limit=3, window=3600, sync_interval=0)
    await first.check(caller)
    await first.check(caller)
    await first.flush()
    await second.check(caller)  # Redis: 3
    await second.flush()
    with pytest.raises(ProblemError) as caught:
        await second.check(caller)
    assert caught.value.problem.status == 429
    # `first` has not heard of `second`'s hit: it may admit once more (the documented
    # overshoot), and refuses as soon as its own count reaches the limit and Redis agrees.
    await first.check(caller)
    with pytest.raises(ProblemError):
        await first.check(caller)
    assert await store.count_hits(caller, 0, window=3600, index=first_index()) == 4


def first_index() -> int:
    return int(time.time() // 3600)


async def test_without_redis_every_call_fails_fast_with_one_error_type() -> None:
    dead = RedisIngressStore.from_url(f"redis://127.0.0.1:{closed_port()}/0", timeout=0.2)
    try:
        for call in (
            dead.ping(),
            dead.claim(uuid4(), "h", ttl=60),
            dead.count_hits("b", 1, window=1, index=0),
            dead.accepted_type(uuid4()),
        ):
            with pytest.raises(RedisUnavailableError):
                async with asyncio.timeout(5):  # a bound, not a measurement
                    await call
    finally:
        await dead.aclose()
