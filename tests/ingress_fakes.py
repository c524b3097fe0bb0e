"""Fakes for the ingress unit tests (they implement the Protocols in producers/ingress/ports.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import create_async_engine

from infra.auth import ApiKey, Scope
from infra.redis_store import Claim, RedisUnavailableError
from infra.settings import Settings
from producers.ingress import create_app
from producers.ingress.ports import BrokerUnavailableError

if TYPE_CHECKING:
    from uuid import UUID

    from producers.ingress.ports import OutgoingCommand


class FakePublisher:
    """Records what it was asked to publish; `failing` makes every publish raise."""

    def __init__(self) -> None:
        self.published: list[OutgoingCommand] = []
        self.failing = False
        self.started = False

    @property
    def ready(self) -> bool:
        return self.started and not self.failing

    async def start(self, *, wait: float = 0.0) -> None:  # noqa: ARG002
        self.started = True

    async def publish(self, command: OutgoingCommand) -> None:
        if self.failing:
            raise BrokerUnavailableError("fake broker down")
        self.published.append(command)

    async def close(self) -> None:
        self.started = False


class FakeIngressStore:
    """Dict-backed idempotency records, counters and markers; `down` makes it unreachable."""

    def __init__(self) -> None:
        self.records: dict[UUID, str] = {}
        self.markers: dict[UUID, str] = {}
        self.counters: dict[str, int] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise RedisUnavailableError("fake redis down")

    async def ping(self) -> None:
        self._check()

    async def claim(self, command_id: UUID, body_hash: str, *, ttl: int) -> Claim:  # noqa: ARG002
        self._check()
        held = self.records.get(command_id)
        if held is None:
            self.records[command_id] = f"{body_hash}:pending"
            return Claim.NEW
        stored, _, state = held.rpartition(":")
        if stored != body_hash:
            return Claim.CONFLICT
        return Claim.PUBLISHED if state == "published" else Claim.IN_FLIGHT

    async def release(self, command_id: UUID) -> None:
        self._check()
        self.records.pop(command_id, None)

    async def record_accepted(
        self,
        command_id: UUID,
        command_type: str,
        *,
        ttl: int,  # noqa: ARG002
        idempotent: bool,
    ) -> None:
        self._check()
        self.markers[command_id] = command_type
        if idempotent and command_id in self.records:
            self.records[command_id] = self.records[command_id].replace(":pending", ":published")

    async def accepted_type(self, command_id: UUID) -> str | None:
        self._check()
        return self.markers.get(command_id)

    async def count_hits(self, bucket: str, hits: int, *, window: int, index: int) -> int:
        self._check()
        key = f"{bucket}:{window}:{index}"
        self.counters[key] = self.counters.get(key, 0) + hits
        return self.counters[key]

    async def aclose(self) -> None:
        return None


class FakeKeyStore:
    """Keys by token; counts lookups."""

    def __init__(self, keys: dict[str, ApiKey] | None = None) -> None:
        self.keys = keys or {}
        self.lookups = 0
        self.failing = False

    async def authenticate(self, token: str) -> ApiKey | None:
        self.lookups += 1
        if self.failing:
            raise ConnectionRefusedError("fake database down")
        return self.keys.get(token)


def fake_key(key_id: str, *scopes: Scope) -> tuple[str, ApiKey]:
    """A token and the key it stands for (never stored anywhere real)."""
    token = f"hisho_{key_id}_{'s' * 43}"
    key = ApiKey(
        id=key_id,
        name="fake",
        scopes=frozenset(scopes),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        revoked_at=None,
    )
    return token, key


WRITER, WRITER_KEY = fake_key("00000000000000a1", Scope.COMMANDS_WRITE)
READER, READER_KEY = fake_key("00000000000000a2", Scope.STATE_READ)
ADMIN, ADMIN_KEY = fake_key("00000000000000a3", Scope.ADMIN)


class FakedIngress:
    """An app on fakes, and the fakes to look at."""

    def __init__(self, **settings: Any) -> None:
        self.publisher = FakePublisher()
        self.store = FakeIngressStore()
        self.keys = FakeKeyStore({WRITER: WRITER_KEY, READER: READER_KEY, ADMIN: ADMIN_KEY})
        self.app = create_app(
            settings=Settings(ingress_max_body_bytes=4096, **settings),
            publisher=self.publisher,
            key_store=self.keys,
            redis=self.store,
            # Never connected to: these tests do not read state.
            engine=create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none"),
        )


class FakeCommandRecords:
    """The processor's records (`CommandRecords`): command id -> body hash."""

    def __init__(self) -> None:
        self.bodies: dict[UUID, str] = {}

    async def body_sha256(self, command_id: UUID) -> str | None:
        """The recorded body hash, or None."""
        return self.bodies.get(command_id)
