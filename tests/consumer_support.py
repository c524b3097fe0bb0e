"""A small test consumer, declared in a few lines, and an in-memory store of held messages.

`demo_consumer()` handles `TaskRetried` events: its one effect per message is a row of
`DEMO_EFFECTS` (the message id and its key, in the order applied). `failures` makes chosen
messages fail: transiently a number of times (`ConnectionError`) or always (a bug).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from events import Actor, Envelope, Message, catalog
from events.task import TaskRetried
from infra.consumers import Consumer, Ordered
from infra.consumers.held import HeldMessage
from infra.consumers.runtime import call_with_retries, settlement_for
from infra.db.table import Column, Conflict, Table
from infra.db.tables import CONSUMER_HELD

if TYPE_CHECKING:
    from collections.abc import Mapping

    from infra.consumers import Outcome, Runner
    from infra.consumers.runtime import Settlement
    from infra.db.uow import UnitOfWork
    from tests.fakes import FakeDatabase

DEMO_EFFECTS = Table(
    "demo_effects",
    (
        Column("seq", "bigint", identity=True, written=False, primary_key=True),
        Column("message_id", "uuid", nullable=False, unique=True),
        Column("partition_key", "text", nullable=False),
    ),
    conflict=Conflict(key=("message_id",)),
)
CREATE_DEMO_EFFECTS = (
    "CREATE TABLE IF NOT EXISTS demo_effects (seq bigserial PRIMARY KEY,"
    " message_id uuid NOT NULL UNIQUE, partition_key text NOT NULL)"
)


@dataclass
class Failures:
    """Which messages fail, and how: `transient[id]` more times, or always (`poison`)."""

    transient: dict[uuid.UUID, int] = field(default_factory=dict)
    poison: set[uuid.UUID] = field(default_factory=set)
    calls: dict[uuid.UUID, int] = field(default_factory=dict)

    def check(self, message_id: uuid.UUID) -> None:
        self.calls[message_id] = self.calls.get(message_id, 0) + 1
        if message_id in self.poison:
            raise ValueError(f"poison {message_id}")
        left = self.transient.get(message_id, 0)
        if left > 0:
            self.transient[message_id] = left - 1
            raise ConnectionError(f"flaky {message_id}")


def demo_consumer(
    failures: Failures,
    *,
    name: str = "demo",
    ordered: bool = False,
    delays: tuple[int, ...] = (200,),
) -> Consumer:
    """The test consumer: one `DEMO_EFFECTS` row per `TaskRetried` it applies."""

    async def handle_task_retried(envelope: Envelope[TaskRetried], uow: UnitOfWork) -> None:
        failures.check(envelope.id)
        uow.rows.add(DEMO_EFFECTS, (envelope.id, str(envelope.aggregate_id)))

    return Consumer(
        name=name,
        handlers={TaskRetried: handle_task_retried},
        ordered=Ordered(partitions=2) if ordered else None,
        retry_delays_ms=delays,
        attempts=3,
    )


def task_retried(task_id: uuid.UUID, version: int) -> Envelope[Message]:
    """Event `version` of one task, as the relay would publish it."""
    return Envelope[Message](
        id=uuid.uuid4(),
        type="TaskRetried",
        version=2,
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        actor=Actor.system("test"),
        aggregate_type="task",
        aggregate_id=task_id,
        aggregate_version=version,
        data=TaskRetried(
            task_id=task_id, workflow_id=task_id, project_id=None, attempt=version + 1
        ),
    )


class FakeHeldMessages:
    """`HeldMessages` in the fake database's `consumer_held` rows (its units' guard reads them)."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    def _rows(self, consumer: str) -> list[dict[str, Any]]:
        rows = self.db.table(CONSUMER_HELD)
        return sorted((row for row in rows if row["consumer"] == consumer), key=lambda r: r["seq"])

    async def hold(self, consumer: str, key: str, message: HeldMessage) -> None:
        for row in self._rows(consumer):
            if row["message_id"] == message.message_id:
                row.update(parked=row["parked"] or message.parked, reason=message.reason)
                return
        values = (
            consumer, key, message.message_id, message.parked, message.reason, message.body,
            json.dumps(dict(message.headers)),
        )  # fmt: skip
        self.db.insert(CONSUMER_HELD, values, datetime.now(UTC))

    async def head(self, consumer: str, key: str) -> HeldMessage | None:
        for row in self._rows(consumer):
            if row["partition_key"] == key:
                fields = (row["message_id"], row["parked"], row["reason"], row["body"])
                return HeldMessage(*fields, headers=row["headers"])
        return None

    async def stuck_keys(self, consumer: str) -> list[str]:
        heads: dict[str, bool] = {}
        for row in self._rows(consumer):
            heads.setdefault(row["partition_key"], row["parked"])
        return [key for key, parked in heads.items() if not parked]

    async def drop(self, consumer: str, message_id: uuid.UUID) -> None:
        self.db.release(consumer, message_id)


async def deliver_with_retries(
    runner: Runner,
    envelope: Envelope[Message],
    headers: Mapping[str, Any] | None = None,
    *,
    redelivered: bool = False,
) -> Outcome | Settlement:
    """What the runtime middleware does with a delivery: retry, then settle (no broker)."""
    body = catalog.encode(envelope)
    assert runner.policy is not None
    try:
        return await call_with_retries(
            lambda: runner.deliver(envelope, body, headers or {}, redelivered=redelivered),
            runner.policy,
        )
    except Exception as error:
        settlement = settlement_for(error, runner.policy, retries_done=0)
        await runner.parking(body, headers or {}, str(envelope.id), None, settlement)
        return settlement
