"""The rate limiter with a fake store: local decisions, a Redis-backed refusal, fail-open."""

from __future__ import annotations

import pytest

from producers.ingress.problems import ProblemError
from producers.ingress.rate_limit import RateLimiter
from tests.ingress_fakes import FakeIngressStore

NOW = 7_200.5  # 0.5 s into a 60 s window


def _limiter(store: FakeIngressStore, limit: int) -> RateLimiter:
    return RateLimiter(store, limit=limit, window=60, sync_interval=0, clock=lambda: NOW)


async def test_the_request_over_the_limit_is_refused_with_retry_after() -> None:
    store = FakeIngressStore()
    limiter = _limiter(store, limit=2)
    await limiter.check("api_key:a")
    await limiter.check("api_key:a")
    with pytest.raises(ProblemError) as caught:
        await limiter.check("api_key:a")
    assert caught.value.problem.status == 429
    assert caught.value.headers["Retry-After"] == "60"  # ceil(59.5)
    await limiter.flush()
    assert store.counters == {"api_key:a:60:120": 2}  # refused requests are not counted


async def test_each_caller_has_its_own_window() -> None:
    limiter = _limiter(FakeIngressStore(), limit=1)
    await limiter.check("api_key:a")
    await limiter.check("api_key:b")
    with pytest.raises(ProblemError):
        await limiter.check("api_key:a")


async def test_hits_admitted_by_another_process_count_once_reported() -> None:
    shared = FakeIngressStore()
    first, second = _limiter(shared, limit=3), _limiter(shared, limit=3)
    await first.check("api_key:a")
    await first.check("api_key:a")
    await first.flush()
    await second.check("api_key:a")  # Redis now says 3
    await second.flush()
    with pytest.raises(ProblemError):
        await second.check("api_key:a")


async def test_without_redis_the_limit_fails_open() -> None:
    store = FakeIngressStore()
    store.down = True
    limiter = _limiter(store, limit=1)
    for _ in range(5):
        await limiter.check("api_key:a")
    store.down = False
    await limiter.flush()  # the hits admitted meanwhile reach Redis once it is back
    assert store.counters == {"api_key:a:60:120": 5}
