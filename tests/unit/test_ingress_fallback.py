"""Redis down, PostgreSQL in its place (with fakes): who answers a claim, a marker, a release."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from events import Actor, ActorKind, catalog
from events.plan import SubmitPlan
from infra.db.ingress_fallback import FallbackUnavailableError
from infra.redis_store import Claim, RedisUnavailableError
from infra.settings import Settings
from infra.telemetry import tracer_provider
from producers.ingress import create_app
from producers.ingress.accept import CommandAcceptor, CommandRequest
from producers.ingress.fallback import FallbackIngressStore
from producers.ingress.problems import ProblemError
from tests.ingress_fakes import (
    WRITER,
    WRITER_KEY,
    FakeCommandRecords,
    FakeIngressStore,
    FakeKeyStore,
    FakePublisher,
)
from tests.ingress_support import ingress_client

ACTOR = Actor(kind=ActorKind.API_KEY, id="0123456789abcdef")


class FakeIngressFallback:
    """Dict-backed `IngressFallback`; `down` makes it unreachable; `calls` counts every use."""

    def __init__(self) -> None:
        self.records: dict[UUID, tuple[str, str]] = {}
        self.markers: dict[UUID, str] = {}
        self.calls = 0
        self.down = False

    def _use(self) -> None:
        self.calls += 1
        if self.down:
            raise FallbackUnavailableError("fake postgresql down")

    async def claim(self, command_id: UUID, body_hash: str, *, ttl: int) -> Claim:  # noqa: ARG002
        self._use()
        if command_id not in self.records:
            self.records[command_id] = (body_hash, "pending")
            return Claim.NEW
        return self._claim_of(command_id, body_hash)

    def _claim_of(self, command_id: UUID, body_hash: str) -> Claim:
        stored, state = self.records[command_id]
        if stored != body_hash:
            return Claim.CONFLICT
        return Claim.PUBLISHED if state == "published" else Claim.IN_FLIGHT

    async def held(self, command_id: UUID, body_hash: str) -> Claim | None:
        self._use()
        return self._claim_of(command_id, body_hash) if command_id in self.records else None

    async def release(self, command_id: UUID) -> None:
        self._use()
        self.records.pop(command_id, None)

    async def record_accepted(
        self,
        command_id: UUID,
        command_type: str,
        *,
        ttl: int,  # noqa: ARG002
        idempotent: bool,
    ) -> None:
        self._use()
        self.markers[command_id] = command_type
        if idempotent and command_id in self.records:
            self.records[command_id] = (self.records[command_id][0], "published")

    async def accepted_type(self, command_id: UUID) -> str | None:
        self._use()
        return self.markers.get(command_id)

    async def holds_live_rows(self) -> bool:
        self._use()
        return bool(self.records or self.markers)


class Parts:
    """An acceptor on a Redis fake and a fallback fake, and the fakes to look at."""

    def __init__(self) -> None:
        self.publisher = FakePublisher()
        self.redis = FakeIngressStore()
        self.fallback = FakeIngressFallback()
        self.now = 0.0
        self.store = FallbackIngressStore(self.redis, self.fallback, clock=lambda: self.now)
        self.acceptor = CommandAcceptor(
            publisher=self.publisher,
            store=self.store,
            records=FakeCommandRecords(),
            tracer=tracer_provider().get_tracer("test"),
            clock=lambda: datetime(2026, 5, 1, tzinfo=UTC),
            idempotency_ttl=3600,
            accepted_ttl=3600,
        )

    def published(self) -> list[str]:
        return [command.message_id for command in self.publisher.published]


def _request(plan_id: UUID, key: str | None = None) -> CommandRequest:
    return CommandRequest(
        entry=catalog.entry("SubmitPlan"),
        data=SubmitPlan(plan_id=plan_id),
        actor=ACTOR,
        caller=f"api_key:{ACTOR.id}",
        idempotency_key=key,
        correlation_id=None,
        traceparent=None,
    )


async def _conflict(parts: Parts, request: CommandRequest) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        await parts.acceptor.accept(request)
    return caught.value


async def test_without_redis_a_reused_key_with_another_body_is_409_and_not_published() -> None:
    parts, plan_id = Parts(), uuid4()
    parts.redis.down = True
    first = await parts.acceptor.accept(_request(plan_id, key="k"))
    conflict = await _conflict(parts, _request(uuid4(), key="k"))
    assert conflict.problem.status == 409
    assert conflict.problem.type.endswith("/idempotency-conflict")
    assert parts.published() == [str(first.command_id)]


async def test_without_redis_the_same_body_again_is_replayed_not_published() -> None:
    parts, plan_id = Parts(), uuid4()
    parts.redis.down = True
    first = await parts.acceptor.accept(_request(plan_id, key="k"))
    again = await parts.acceptor.accept(_request(plan_id, key="k"))
    assert (again.command_id, again.replayed) == (first.command_id, True)
    assert parts.published() == [str(first.command_id)]
    assert parts.redis.records == {}  # nothing was written to Redis


async def test_without_redis_a_fresh_command_is_accepted_from_the_fallback_marker() -> None:
    parts = Parts()
    parts.redis.down = True
    accepted = await parts.acceptor.accept(_request(uuid4()))
    assert parts.fallback.markers == {accepted.command_id: "SubmitPlan"}
    assert await parts.store.accepted_type(accepted.command_id) == "SubmitPlan"
    with pytest.raises(RedisUnavailableError):  # perhaps accepted into Redis before: no 404
        await parts.store.accepted_type(uuid4())


async def test_without_redis_a_failed_publish_releases_the_fallback_record() -> None:
    parts, plan_id = Parts(), uuid4()
    parts.redis.down = True
    parts.publisher.failing = True
    with pytest.raises(ProblemError):
        await parts.acceptor.accept(_request(plan_id, key="k"))
    assert parts.fallback.records == {}
    parts.publisher.failing = False
    retried = await parts.acceptor.accept(_request(uuid4(), key="k"))  # another body is fine
    assert parts.published() == [str(retried.command_id)]


async def test_with_redis_up_and_an_empty_fallback_only_redis_is_used() -> None:
    parts = Parts()
    for _ in range(5):
        accepted = await parts.acceptor.accept(_request(uuid4(), key=str(uuid4())))
        assert await parts.store.accepted_type(accepted.command_id) == "SubmitPlan"
    assert await parts.store.accepted_type(uuid4()) is None
    # One liveness check for the whole recheck interval; no record, marker or claim there.
    assert parts.fallback.calls == 1
    parts.now += 5.0
    await parts.acceptor.accept(_request(uuid4(), key="later"))
    assert parts.fallback.calls == 2
    await parts.acceptor.accept(_request(uuid4()))  # no key: no claim, no check
    assert parts.fallback.calls == 2


async def test_with_redis_back_and_empty_the_fallback_still_answers_keys_of_the_outage() -> None:
    parts, plan_id = Parts(), uuid4()
    parts.redis.down = True
    first = await parts.acceptor.accept(_request(plan_id, key="k"))
    fresh = await parts.acceptor.accept(_request(uuid4()))
    parts.redis.down = False  # back, and empty (a restarted Redis)
    conflict = await _conflict(parts, _request(uuid4(), key="k"))
    again = await parts.acceptor.accept(_request(plan_id, key="k"))
    conflict_again = await _conflict(parts, _request(uuid4(), key="k"))
    assert conflict.problem.status == conflict_again.problem.status == 409
    assert (again.command_id, again.replayed) == (first.command_id, True)
    assert parts.published() == [str(first.command_id), str(fresh.command_id)]
    assert await parts.store.accepted_type(fresh.command_id) == "SubmitPlan"
    # A key of after the outage is Redis's again.
    later = await parts.acceptor.accept(_request(uuid4(), key="after"))
    assert later.command_id in parts.redis.records
    assert later.command_id not in parts.fallback.records


async def test_with_redis_and_postgresql_down_the_answers_are_as_before() -> None:
    parts, plan_id = Parts(), uuid4()
    parts.redis.down = parts.fallback.down = True
    first = await parts.acceptor.accept(_request(plan_id, key="k"))
    again = await parts.acceptor.accept(_request(plan_id, key="k"))
    # Published twice with one id (the processor's inbox applies it once), as without either.
    assert parts.published() == [str(first.command_id)] * 2
    assert again.command_id == first.command_id
    with pytest.raises(RedisUnavailableError):
        await parts.store.accepted_type(first.command_id)


async def test_a_redis_miss_while_the_fallback_is_live_but_unreadable_is_unavailable() -> None:
    parts = Parts()
    parts.redis.down = True
    await parts.acceptor.accept(_request(uuid4()))
    parts.redis.down = False
    parts.fallback.down = True
    with pytest.raises(RedisUnavailableError):  # the status URL's 503, not a wrong 404
        await parts.store.accepted_type(uuid4())


async def test_the_app_keeps_its_markers_in_the_fallback_it_is_given_while_redis_is_down() -> None:
    parts = Parts()
    parts.redis.down = True
    app = create_app(
        settings=Settings(),
        publisher=parts.publisher,
        key_store=FakeKeyStore({WRITER: WRITER_KEY}),
        redis=parts.redis,
        fallback=parts.fallback,
        # Never connected to: this test reads no state.
        engine=create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none"),
    )
    async with ingress_client(app) as client:
        posted = await client.post(
            "/v1/commands/SubmitPlan",
            json={"plan_id": str(uuid4())},
            headers={"Authorization": f"Bearer {WRITER}"},
        )
    assert posted.status_code == 202
    assert parts.fallback.markers == {UUID(posted.json()["command_id"]): "SubmitPlan"}
