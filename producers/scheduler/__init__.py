"""The scheduler: fires durable timers and periodic jobs through the outbox, exactly once."""

from producers.scheduler.loop import run

__all__ = ["run"]
