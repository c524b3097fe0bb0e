"""A process's one AMQP connection and its one confirmed publisher.

`AmqpConnection` is a robust aio-pika connection: it connects in the background (a
component may start while the broker is down) and reconnects by itself. `ConfirmedPublisher`
is one confirm-mode channel on it (restored with the connection). Publishes go straight
onto the aiormq channel beneath: aio-pika's Message and Exchange layers cost ~60 us of CPU
per message and add nothing here. Two ways to publish, one per speed profile:

- `publish()`: one message, waiting for its confirm within a timeout (the ingress: one
  command per request). A failure says whether the broker certainly did not take the
  message (`NotPublishedError`: not connected, channel closed before sending, a nack, a
  returned unroutable message) or may have (`ConfirmUnknownError`: no confirm in time, the
  channel or connection lost on the way).
- `stream(window)`: a `ConfirmStream` pinned to the channel as it is now, with at most
  `window` unconfirmed messages; `send()` returns the confirm as a future without waiting
  for it (the relay: batches leave in one write). Once that channel is gone every `send`
  fails: a stream never continues on a restored channel, so its messages reach the broker
  in call order or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, cast

import aio_pika
import structlog
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import aiormq
    from aio_pika.abc import AbstractChannel, AbstractRobustConnection
    from aiormq import spec

log = structlog.get_logger("hisho.amqp")

FAILURES = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError)
CONNECT_TIMEOUT = 5.0


class NotPublishedError(Exception):
    """The broker certainly did not take a message."""


class ConfirmUnknownError(Exception):
    """A message was (or may have been) sent, but no confirm came: it may have been taken."""


def describe(exc: BaseException) -> str:
    """An error's message, or its type's name when it has none."""
    return str(exc) or type(exc).__name__


class AmqpConnection:
    """The process's robust connection to the broker, connected in the background."""

    def __init__(self, url: str, *, reconnect_interval: float = 1.0) -> None:
        self._url = url
        self._reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._connected = asyncio.Event()
        self._connector: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether the connection is open now."""
        return self._connection is not None and not self._connection.is_closed

    def start(self) -> None:
        """Begin connecting (idempotent); failures are retried every `reconnect_interval`."""
        if self._connector is None:
            self._connector = asyncio.create_task(self._connect_until_done())

    async def connected(self) -> AbstractRobustConnection:
        """The connection, once it was established (it may be reconnecting since)."""
        self.start()
        await self._connected.wait()
        assert self._connection is not None  # set before the event
        return self._connection

    async def _connect_until_done(self) -> None:
        async def connect() -> None:
            self._connection = await aio_pika.connect_robust(
                self._url, reconnect_interval=self._reconnect_interval, timeout=CONNECT_TIMEOUT
            )

        await _until_done(connect, self._reconnect_interval, "broker not reachable yet")
        self._connected.set()

    async def close(self) -> None:
        """Stop connecting and close the connection."""
        await _cancel(self._connector)
        connection, self._connection = self._connection, None
        await _close(connection)


class ConfirmedPublisher:
    """One confirm-mode channel on the process's connection (returns raise)."""

    def __init__(self, connection: AmqpConnection, *, retry_interval: float = 1.0) -> None:
        self._connection = connection
        self._retry_interval = retry_interval
        self._channel: AbstractChannel | None = None
        self._opener: asyncio.Task[None] | None = None
        self._open = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Whether a publish can be attempted now (connected, channel open)."""
        channel = self._channel
        return self._connection.ready and channel is not None and not channel.is_closed

    async def start(self, *, wait: float = 0.0, exchanges: Sequence[str] = ()) -> None:
        """Open the channel in the background once `exchanges` exist; wait up to `wait` s."""
        if self._opener is None:
            self._opener = asyncio.create_task(self._open_until_done(tuple(exchanges)))
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._open.wait()), wait)

    async def _open_until_done(self, exchanges: tuple[str, ...]) -> None:
        connection = await self._connection.connected()

        async def open_channel() -> None:
            if exchanges:
                async with connection.channel(publisher_confirms=False) as probe:
                    for name in exchanges:  # declared? (topology is not ours to make)
                        await probe.get_exchange(name, ensure=True)
            self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)

        await _until_done(open_channel, self._retry_interval, "broker not ready for publishing yet")
        self._open.set()

    async def publish(
        self,
        body: bytes,
        *,
        exchange: str,
        routing_key: str,
        properties: spec.Basic.Properties,
        mandatory: bool,
        confirm_timeout: float,
    ) -> None:
        """Publish, wait up to `confirm_timeout` s for the confirm; raise one of the two errors."""
        channel = self._channel
        if channel is None or not self.ready:
            raise NotPublishedError("not connected to the broker")
        try:
            async with asyncio.timeout(confirm_timeout):
                underlay = await channel.get_underlay_channel()
                await underlay.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=mandatory,
                )
        except DeliveryError as exc:  # a nack, or returned unroutable (PublishError)
            raise NotPublishedError(describe(exc)) from exc
        except ChannelInvalidStateError as exc:  # refused on a closed channel, before sending
            raise NotPublishedError(describe(exc)) from exc
        except FAILURES as exc:  # a timeout, or a channel or connection lost on the way
            raise ConfirmUnknownError(describe(exc)) from exc

    async def stream(self, *, window: int, wait: float = CONNECT_TIMEOUT) -> ConfirmStream:
        """A stream on the channel as it is now, once open (`TimeoutError` after `wait` s)."""
        await self.start()
        async with asyncio.timeout(wait):
            await self._open.wait()
            channel = self._channel
            assert channel is not None  # set before the event
            if isinstance(channel, aio_pika.RobustChannel):
                await channel.ready()  # restored after a reconnect, if there was one
            underlay = await channel.get_underlay_channel()
        return ConfirmStream(cast("aiormq.Channel", underlay), window=window)

    async def close(self) -> None:
        """Stop opening and close the channel (the connection is its owner's to close)."""
        await _cancel(self._opener)
        channel, self._channel = self._channel, None
        await _close(channel)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, *FAILURES):
            await task


async def _close(resource: AbstractRobustConnection | AbstractChannel | None) -> None:
    if resource is not None:
        with contextlib.suppress(*FAILURES):
            await resource.close()


class ConfirmStream:
    """Publishes in call order on one aiormq channel, at most `window` unconfirmed."""

    def __init__(self, channel: aiormq.Channel, *, window: int) -> None:
        self._channel = channel
        self._slots = asyncio.Semaphore(window)

    async def send(
        self, body: bytes, *, exchange: str, routing_key: str, properties: spec.Basic.Properties
    ) -> asyncio.Future[Any]:
        """Publish, waiting for a free slot; the future ends on the broker's ack.

        The message goes out without waiting for the write to drain (`wait=False`), so the
        messages of a batch leave in one write; a nack fails the future (`DeliveryError`),
        and so does a lost channel. A closed channel refuses at once.
        """
        await self._slots.acquire()
        if self._channel.is_closed:
            self._slots.release()
            raise ChannelInvalidStateError("the stream's channel is closed")
        try:
            confirm = asyncio.ensure_future(
                self._channel.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=False,
                    wait=False,
                )
            )
        except BaseException:
            self._slots.release()
            raise
        confirm.add_done_callback(self._release)
        return confirm

    def _release(self, _: asyncio.Future[Any]) -> None:
        self._slots.release()


async def _until_done(
    attempt: Callable[[], Awaitable[None]], interval: float, waiting: str
) -> None:
    """Run `attempt` (each within `CONNECT_TIMEOUT`) until it succeeds, `interval` s apart."""
    while True:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await attempt()
        except FAILURES as exc:
            log.warning(waiting, error=describe(exc))
            await asyncio.sleep(interval)
        else:
            return
