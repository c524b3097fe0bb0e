"""Support for the ingress tests: fakes, an in-process client, a TCP proxy to cut."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import uuid4

import httpx

from infra.auth import ApiKey, Scope, SqlApiKeyStore
from infra.redis_store import Claim, RedisUnavailableError
from infra.topology import COMMANDS_EXCHANGE
from producers.ingress.publisher import BrokerUnavailableError, OutgoingCommand

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from uuid import UUID

    from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection until `restore()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._open = True
        self._url = ""
        self.port = 0

    @classmethod
    def to_url(cls, url: str) -> TcpProxy:
        """A proxy to the server a URL names."""
        parts = urlsplit(url)
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or 0)
        proxy._url = url
        return proxy

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def start_url(self) -> str:
        """Start, and return the `to_url` URL rewritten to go through the proxy."""
        port = await self.start()
        parts = urlsplit(self._url)
        credentials = f"{parts.username}:{parts.password}@" if parts.username else ""
        return parts._replace(netloc=f"{credentials}127.0.0.1:{port}").geturl()

    def cut(self) -> None:
        """Abort every proxied connection and refuse new ones."""
        self._open = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        """Accept and forward connections again."""
        self._open = True

    async def close(self) -> None:
        """Stop listening and drop everything."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()


# --- fakes for the unit tier (they implement the Protocols in producers/ingress/ports.py) ---


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

    async def hit(self, bucket: str, *, limit: int, window: int, now: float) -> float | None:
        self._check()
        key = f"{bucket}:{int(now // window)}"
        self.counters[key] = self.counters.get(key, 0) + 1
        return None if self.counters[key] <= limit else window - now % window

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


@contextlib.asynccontextmanager
async def ingress_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and talk to it in-process."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://ingress") as client,
    ):
        yield client


# --- real-broker helpers for the integration and e2e tiers ---


class Tap:
    """A private queue bound to `hisho.commands` for one routing key."""

    def __init__(self, queue: AbstractQueue) -> None:
        self.queue = queue

    async def take(self, count: int, *, timeout: float = 5.0) -> list[AbstractIncomingMessage]:
        """Wait (bounded) for `count` messages; return what arrived."""
        got: list[AbstractIncomingMessage] = []
        async with asyncio.timeout(timeout):
            while len(got) < count:
                message = await self.queue.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.02)
                    continue
                got.append(message)
        return got

    async def drain(self) -> list[AbstractIncomingMessage]:
        """Everything in the queue now.

        A publish the ingress answered for was confirmed before the answer, and a confirmed
        message is already in every queue it routes to: no waiting is needed to see it.
        """
        got = []
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            got.append(message)
        return got

    async def from_actors(self, *actor_ids: str) -> list[dict[str, Any]]:
        """Envelopes now in the queue whose actor is one of `actor_ids`."""
        envelopes = [json.loads(message.body) for message in await self.drain()]
        return [env for env in envelopes if env["actor"]["id"] in actor_ids]


@contextlib.asynccontextmanager
async def tap(connection: AbstractConnection, routing_key: str) -> AsyncIterator[Tap]:
    """A tap queue on `hisho.commands` for `routing_key`, deleted afterwards."""
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(f"test.tap.{uuid4()}", exclusive=True)
        await queue.bind(COMMANDS_EXCHANGE, routing_key)
        yield Tap(queue)
    finally:
        await channel.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class IngressKeys:
    """Real API keys made for one test module: tokens and their key ids."""

    writer: str
    reader: str
    bystander: str  # events:read only
    ids: tuple[str, ...]

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        """The Authorization header for a token."""
        return {"Authorization": f"Bearer {token}"}


async def make_test_keys(engine: AsyncEngine) -> IngressKeys:
    """Create a writer, a reader and a key with neither scope."""
    store = SqlApiKeyStore(engine)
    writer = await store.create(scopes=[Scope.COMMANDS_WRITE], name="test writer")
    reader = await store.create(scopes=[Scope.STATE_READ], name="test reader")
    bystander = await store.create(scopes=[Scope.EVENTS_READ], name="test bystander")
    return IngressKeys(
        writer=writer.token,
        reader=reader.token,
        bystander=bystander.token,
        ids=(writer.key.id, reader.key.id, bystander.key.id),
    )
