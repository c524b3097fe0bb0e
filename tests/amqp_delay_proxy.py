"""A TCP proxy between an AMQP client and the broker that can hold back the broker's frames.

`delay(seconds)` makes every byte the broker sends from then on reach the client `seconds`
later (a publisher confirm that arrives late, say); bytes keep their order, so a later,
shorter delay never overtakes an earlier one. `flushed()` waits until nothing is held back.
Client -> broker bytes always pass at once. Everything else is `TcpProxy`'s: `start_url()`
gives the URL through the proxy, `close()` drops every connection and stops listening.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol
from urllib.parse import urlsplit

from tests.ingress_support import TcpProxy


class AmqpDelayProxy(TcpProxy):
    """Forwards 127.0.0.1:<port> to the broker of an AMQP URL, delaying replies on demand."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        super().__init__(parts.hostname or "127.0.0.1", parts.port or 5672)
        self._url = url
        self._delay = 0.0
        self._held = 0  # chunks read from the broker and not yet written to the client
        self._idle = asyncio.Event()
        self._idle.set()

    def delay(self, seconds: float) -> None:
        """Hold back what the broker sends from now on by `seconds` (0: pass at once)."""
        self._delay = seconds

    async def flushed(self, timeout: float = 10.0) -> None:
        """Wait until every held-back byte has reached the client."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def _reply(self, broker_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        """Broker -> client, each chunk due at read time + the delay then set, in order."""
        loop = asyncio.get_running_loop()
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def write() -> None:
            while True:
                at, chunk = await due.get()
                try:
                    await asyncio.sleep(max(0.0, at - loop.time()))
                    with contextlib.suppress(ConnectionError, OSError):
                        client.write(chunk)
                        await client.drain()
                finally:
                    self._release(1)

        writer = asyncio.create_task(write())
        last = 0.0
        try:
            while chunk := await broker_in.read(65536):
                last = max(last, loop.time() + self._delay)
                self._held += 1
                self._idle.clear()
                due.put_nowait((last, chunk))
        except (ConnectionError, OSError):
            pass
        finally:
            writer.cancel()
            self._release(due.qsize())  # the connection is gone: nothing more will be written
            self._writers.discard(client)
            client.transport.abort()

    def _release(self, chunks: int) -> None:
        self._held -= chunks
        if self._held <= 0:
            self._held = 0
            self._idle.set()


class _Publisher(Protocol):
    @property
    def ready(self) -> bool: ...


async def loss_noticed(publisher: _Publisher, deadline: float = 10.0) -> None:
    """Wait (bounded) until a publisher has seen its connection go.

    Until then a publish is written to a connection that is already dead: the ingress cannot
    know whether the broker got it, and answers 504 (unknown outcome), not 503.
    """
    async with asyncio.timeout(deadline):
        while publisher.ready:
            await asyncio.sleep(0.01)
