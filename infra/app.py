"""The resources one process runs with: what `hisho.bootstrap.build_app` builds and closes.

Every component's `run(app, stop)` takes its engine, broker connection, publisher and clients
from here and builds none of its own. The type lives in `infra` so that producers and
consumers, which sit below `hisho`, can name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.amqp import AmqpConnection, ConfirmedPublisher
    from infra.clock import Clock
    from infra.consumers import ConsumerRegistry
    from infra.settings import Settings


@dataclass(frozen=True)
class App:
    """One process's shared resources (connections open lazily or in the background)."""

    settings: Settings
    component: str  # what runs in this process: "ingress", "relay", a consumer's name
    engine: AsyncEngine  # PostgreSQL, pooled as the component needs (no connection until used)
    amqp: AmqpConnection  # the process's one broker connection
    publisher: ConfirmedPublisher  # its one confirmed channel
    redis: Redis  # fail-fast client (connects on first use)
    clock: Clock
    tracing: TracerProvider
    consumers: ConsumerRegistry  # every registered consumer (`hisho.consumers.CONSUMERS`)
