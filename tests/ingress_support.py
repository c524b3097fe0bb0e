"""Support for the ingress tests on real services: in-process client, tap queues, a TCP proxy
to cut, keys, and `hisho run ingress` as a process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import uuid4

import httpx

from hisho.bootstrap import build_app
from infra.amqp import AmqpConnection, ConfirmedPublisher
from infra.auth import Scope, SqlApiKeyStore
from infra.topology import COMMANDS_EXCHANGE
from producers.ingress import create_app
from producers.ingress.publisher import AmqpCommandPublisher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings


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
            self._pipe(reader, up_writer), self._reply(up_reader, writer), return_exceptions=True
        )

    async def _reply(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server -> client: passed at once here (a subclass may hold it back)."""
        await self._pipe(reader, writer)

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


@contextlib.asynccontextmanager
async def ingress_app(settings: Settings, **parts: Any) -> AsyncIterator[FastAPI]:
    """The ingress on a process App of its own (as `hisho run ingress` builds it)."""
    async with build_app(settings, component="ingress") as resources:
        yield create_app(resources, **parts)


@contextlib.asynccontextmanager
async def command_publisher(
    url: str, *, confirm_timeout: float, reconnect_interval: float = 1.0
) -> AsyncIterator[AmqpCommandPublisher]:
    """The ingress's publisher on a connection of its own to `url` (a proxy, say)."""
    connection = AmqpConnection(url, reconnect_interval=reconnect_interval)
    confirmed = ConfirmedPublisher(connection, retry_interval=reconnect_interval)
    try:
        yield AmqpCommandPublisher(confirmed, confirm_timeout=confirm_timeout)
    finally:
        await confirmed.close()
        await connection.close()


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


# --- `hisho run ingress` and `hisho keys` as real processes (e2e tier) ---


def service_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of a hisho process using the same services as the tests."""
    return {
        **os.environ,
        "HISHO_AMQP_URL": settings.amqp,
        "HISHO_DATABASE_URL": settings.database_dsn,
        "HISHO_REDIS_URL": settings.redis,
        "HISHO_LOG_FORMAT": "json",
        **overrides,
    }


def hisho_cli(env: dict[str, str], *args: str) -> str:
    """Run `hisho <args>` and return its stdout (raises on a non-zero exit)."""
    done = subprocess.run(
        [sys.executable, "-m", "hisho", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def cli_key(env: dict[str, str], *scopes: str) -> tuple[str, str]:
    """Create a key with `hisho keys create`; return (key id, token)."""
    args = [part for scope in scopes for part in ("--scope", scope)]
    lines = hisho_cli(env, "keys", "create", *args, "--name", "e2e").splitlines()
    return lines[0].removeprefix("key id: "), lines[-1]


@dataclass
class IngressProcess:
    """A running `hisho run ingress`."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait for the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@contextlib.contextmanager
def ingress_process(env: dict[str, str], log_dir: Path) -> Iterator[IngressProcess]:
    """Start `hisho run ingress` on a free port; wait (bounded) until /readyz answers 200."""
    port = closed_port()
    log = log_dir / "ingress.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "hisho", "run", "ingress"],
            env={**env, "HISHO_INGRESS_PORT": str(port)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = IngressProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_ready(running)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_ready(running: IngressProcess, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if running.process.poll() is not None:
            raise AssertionError(f"ingress exited: {running.log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"ingress not ready in {deadline}s: {running.log.read_text()}")
