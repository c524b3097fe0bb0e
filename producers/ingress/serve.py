"""Serve the ingress with uvicorn until the stop event is set (SIGTERM/SIGINT in `hisho run`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import uvicorn

from infra.readiness import notify_ready
from producers.ingress.app import create_app

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator

    from fastapi import FastAPI

    from infra.app import App


class _Server(uvicorn.Server):
    """uvicorn that leaves signals to its caller and tells the supervisor when it listens."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # `hisho run` owns SIGTERM/SIGINT and sets the stop event

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            notify_ready("ingress")


def uvicorn_config(app: FastAPI, *, host: str, port: int) -> uvicorn.Config:
    """How the ingress is served (bench/ingress.py serves its baseline the same way).

    No access log, and no `X-Forwarded-*` rewriting: nothing in the ingress reads the client
    address or scheme, and uvicorn's proxy-headers layer would run on every request.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # its loggers go through infra.logging (one JSON object a line)
        access_log=False,
        proxy_headers=False,
        lifespan="on",
    )


async def run(app: App, stop: asyncio.Event) -> None:
    """Serve on settings.ingress_host:ingress_port until `stop` is set, then shut down."""
    settings = app.settings
    api = create_app(app)
    config = uvicorn_config(api, host=settings.ingress_host, port=settings.ingress_port)
    server = _Server(config)
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    api.state.push.hub.close()  # live streams end now: uvicorn waits for open connections
    server.should_exit = True
    await serving
