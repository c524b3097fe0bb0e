"""The outbox relay: positions, chains, confirmed publishes and marks of outbox rows."""

from producers.relay.loop import run

__all__ = ["run"]
