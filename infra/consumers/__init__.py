"""The consumer framework: declare a consumer; the framework queues, retries, parks and orders.

See `docs/consumers.md`. A consumer module declares a `Consumer` (name, handlers by message
type, optionally `Ordered`); `hisho` registers it, declares its queues with every other
consumer's, and runs it as `hisho run <name>`.
"""

from infra.consumers.declaration import Consumer, ConsumerRegistry, Handler, Ordered, Parked
from infra.consumers.runner import Outcome, Runner

__all__ = ["Consumer", "ConsumerRegistry", "Handler", "Ordered", "Outcome", "Parked", "Runner"]
