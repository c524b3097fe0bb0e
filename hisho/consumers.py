"""Every consumer of the system, registered once (a new consumer is one line here).

`declare_all` declares their queues with one `declare_topology`; `hisho run` and `hisho up`
find them here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumers import command_processor
from infra.consumers import ConsumerRegistry
from infra.topology import declare_topology

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

CONSUMERS = ConsumerRegistry((command_processor.CONSUMER,))


async def declare_all(connection: AbstractConnection) -> None:
    """Declare the exchanges and every registered consumer's queues (idempotent)."""
    await declare_topology(connection, CONSUMERS.queue_specs())
