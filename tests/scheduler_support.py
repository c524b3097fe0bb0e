"""Timers in bulk and the scheduler's leader, for the chaos tier and `bench/scheduler.py`.

`schedule_many` schedules timers through the real unit of work (`infra.scheduler.timers`),
each sending an `ExpirePlan` for a plan id of its own, so the outbox rows of one timer are
counted by that id.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from events import Actor
from events.plan import ExpirePlan
from infra.db.pg_uow import PgUnitOfWork
from infra.leadership import current_leader
from infra.message_context import MessageContext
from infra.scheduler.timers import schedule
from producers.scheduler.loop import SCHEDULER_LOCK_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

PER_UNIT = 2000  # timers one unit of work schedules (one commit statement)

# Per timer: its key, plan id, due and fired time, and how many outbox rows carry its plan.
TIMER_OUTCOMES = """SELECT t.key, t.data->>'plan_id' AS plan_id, t.due_at, t.fired_at,
    t.command_id, count(o.id) AS rows
    FROM timers t LEFT JOIN outbox o
      ON o.type = 'ExpirePlan' AND o.data->>'plan_id' = t.data->>'plan_id'
    WHERE t.timer_group = $1 GROUP BY t.key"""


async def schedule_many(engine: AsyncEngine, dues: Sequence[datetime], group: str) -> list[str]:
    """Schedule one timer per due time (keys `<group>:<n>`); their plan ids, in order."""
    plans: list[str] = []
    for start in range(0, len(dues), PER_UNIT):
        context = MessageContext(
            correlation_id=uuid.uuid4(), causation_id=uuid.uuid4(), actor=Actor.system("tests")
        )
        uow = PgUnitOfWork(engine, context=context)
        async with uow:
            for n, due in enumerate(dues[start : start + PER_UNIT], start):
                plan_id = uuid.uuid4()
                command = ExpirePlan(plan_id=plan_id)
                schedule(uow, key=f"{group}:{n}", due=due, command=command, group=group)
                plans.append(str(plan_id))
            await uow.commit()
    return plans


async def scheduler_leader(connection: asyncpg.Connection) -> int | None:
    """The pid of the `hisho run scheduler` process holding the scheduler lock, if any."""
    name = await current_leader(connection, key=SCHEDULER_LOCK_KEY)
    return None if name is None else int(name.rsplit(":", 1)[1])
