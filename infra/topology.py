"""RabbitMQ topology: exchange and queue names, and `declare_topology()`."""

from __future__ import annotations

COMMANDS_EXCHANGE = "hisho.commands"  # direct; routing key = command type
EVENTS_EXCHANGE = "hisho.events"  # topic; routing key = aggregate.verbed
RETRY_EXCHANGE = "hisho.retry"
DEAD_EXCHANGE = "hisho.dead"
COMMAND_QUEUE = "hisho.command_processor"  # quorum queue bound to every command type
