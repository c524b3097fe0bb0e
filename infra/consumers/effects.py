"""The one way to do an external effect (e-mail, HTTP call, AI call) from a consumer.

An effect outside PostgreSQL cannot share the unit's transaction, so it is bracketed:

1. **claim before**: `await effects.claim(consumer, envelope.id)` commits (at once, in its own
   statement) a `started` row in `consumer_effects`, counting the attempts;
2. **the effect keyed by the envelope id**: `claim.key` is the idempotency key the other side
   deduplicates on (an `Idempotency-Key` header, a webhook id, an e-mail `Message-ID`);
3. **record after**: `record_effect(uow, consumer, envelope.id, outcome)` marks it `done` in the
   handler's unit, committed with the inbox row and everything else the handler wrote.

A crash or a failure between 2 and 3 brings the message back; the effect runs again with the
same key (at least once, with the same id: `claim.attempt > 1` tells the handler an earlier
attempt may have done it). Once 3 committed, the inbox acknowledges every later copy, so the
effect is never started again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from infra.db.engine import driver_of
from infra.db.tables import CONSUMER_EFFECTS

if TYPE_CHECKING:
    import uuid

    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.db.uow import UnitOfWork

CLAIM_SQL = (
    "INSERT INTO consumer_effects (consumer, message_id, state) VALUES ($1, $2, 'started')"
    " ON CONFLICT (consumer, message_id) DO UPDATE"
    " SET attempts = consumer_effects.attempts + 1 RETURNING attempts, state"
)


@dataclass(frozen=True)
class EffectClaim:
    """A claimed effect: the key to perform it with, and how many times it was claimed."""

    key: str
    attempt: int
    done: bool  # recorded already (a copy applied it meanwhile): do not perform it again


class Effects(Protocol):
    """Claims external effects before they are performed (PostgreSQL; a fake in unit tests)."""

    async def claim(self, consumer: str, message_id: uuid.UUID) -> EffectClaim:
        """Commit the claim now; the attempt number (1 the first time)."""
        ...


class PgEffects:
    """`Effects` in the `consumer_effects` table (migration 0008)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(self, consumer: str, message_id: uuid.UUID) -> EffectClaim:
        """Insert (or count again) the claim, committed before the effect starts."""
        async with self._engine.connect() as connection:
            row = await (await driver_of(connection)).fetchrow(CLAIM_SQL, consumer, message_id)
        assert row is not None  # an upsert returning its row always has one
        return EffectClaim(
            key=str(message_id), attempt=row["attempts"], done=row["state"] == "done"
        )


def record_effect(
    uow: UnitOfWork, consumer: str, message_id: uuid.UUID, outcome: dict[str, Any]
) -> None:
    """Mark the effect `done` with its outcome, in the handler's unit."""
    uow.rows.add(CONSUMER_EFFECTS, (consumer, message_id, "done", json.dumps(outcome)))
