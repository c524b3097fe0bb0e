"""`hisho run <component>`: run one component in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING

import typer
import uvloop

from hisho import consumers
from hisho.bootstrap import AppComponent, run_on_app
from infra.logging import configure_logging
from infra.settings import Settings, load_settings

if TYPE_CHECKING:
    from infra.consumers import Consumer

app = typer.Typer(help="Run one component in the foreground (for scaling out).")

SHUTDOWN_GRACE = 10.0  # seconds a component gets to finish in-flight work after a signal
# The cyclic collector's first generation runs every 700 net allocations by default: per
# message that was ~6 % of the processor's CPU, walking objects that live as long as the
# process. Those are frozen out of collection once imported; young objects are collected
# every `GC_YOUNG_THRESHOLD` allocations (reference counting still frees most at once).
GC_YOUNG_THRESHOLD = 20_000

Component = Callable[[Settings, asyncio.Event], Awaitable[None]]


async def run_until_signalled(component: Component, settings: Settings) -> None:
    """Run `component` until SIGTERM/SIGINT, then give it `SHUTDOWN_GRACE` to finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.ensure_future(component(settings, stop))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        with suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_GRACE)
    if not task.done():
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    else:
        task.result()  # a component that ended on its own with an error fails the command


def serve(component: Component) -> None:
    """Run one component on uvloop (a faster event loop; every library here supports it)."""
    settings = load_settings()
    configure_logging(settings)
    gc.freeze()  # what the imports built lives as long as the process
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    uvloop.run(run_until_signalled(component, settings))


def serve_app(component: AppComponent, name: str) -> None:
    """`serve` a component that runs on the process's `App` (built, then closed, around it)."""
    serve(partial(run_on_app, component, name))


@app.command("relay")
def relay_command() -> None:
    """Relay the outbox to RabbitMQ (leader or hot standby) until SIGTERM/SIGINT."""
    from producers import relay  # noqa: PLC0415  (each component imports only its own code)

    serve_app(relay.run, "relay")


@app.command("scheduler")
def scheduler_command() -> None:
    """Fire due timers and periodic jobs through the outbox (leader or hot standby)."""
    from hisho.periodic import PERIODIC_JOBS  # noqa: PLC0415  (each component imports its own)
    from producers import scheduler  # noqa: PLC0415

    serve_app(partial(scheduler.run, jobs=PERIODIC_JOBS), "scheduler")


@app.command("ingress")
def ingress_command() -> None:
    """Serve the HTTP ingress on HISHO_INGRESS_HOST:HISHO_INGRESS_PORT until SIGTERM/SIGINT."""
    from producers import ingress  # noqa: PLC0415  (each component imports only its own code)

    serve_app(ingress.run, "ingress")


def _consumer_command(consumer: Consumer) -> Callable[[], None]:
    def command() -> None:
        serve_app(partial(consumers.run, consumer), consumer.command or consumer.name)

    command.__doc__ = f"Run the {consumer.name} consumer until SIGTERM/SIGINT (any number may run)."
    return command


for _consumer in consumers.CONSUMERS:  # every registered consumer is a `hisho run` command
    app.command(_consumer.command or _consumer.name)(_consumer_command(_consumer))
