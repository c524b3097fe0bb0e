"""Firing due timers, decided without I/O: what to write to the outbox, how to mark each timer.

The scheduler's store reads a batch of due, unfired timers (locked) and writes what
`fire` decides in the same transaction: the commands' outbox rows, the timers' marks and the
next occurrences of periodic jobs. A timer cancelled by its group is marked cancelled and
sends nothing; one whose command can no longer be read (its type left the catalog, say) is
marked fired with the problem and sends nothing, so it never blocks the timers behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from events import ContractError
from infra.db.outbox import command_envelope
from infra.scheduler.timers import command_of, fired_context

if TYPE_CHECKING:
    import uuid
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from events import Envelope, Message
    from infra.clock import Clock
    from infra.scheduler.periodic import PeriodicJobs


@dataclass(frozen=True, slots=True)
class Mark:
    """What becomes of one due timer."""

    key: str
    fired_at: datetime | None
    cancelled_at: datetime | None
    command_id: uuid.UUID | None
    problem: str | None


@dataclass
class Firing:
    """The writes of one firing transaction, and the lags of what it sent."""

    envelopes: list[Envelope[Message]] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    following: list[tuple[Any, ...]] = field(default_factory=list)  # periodic jobs' next timers
    lags: list[float] = field(default_factory=list)  # seconds from due to fired, per command
    keys: list[str] = field(default_factory=list)  # the fired timers' keys, as `envelopes`

    @property
    def cancelled(self) -> int:
        """Timers found cancelled."""
        return sum(1 for mark in self.marks if mark.cancelled_at is not None)

    @property
    def failed(self) -> int:
        """Timers that sent nothing for a problem."""
        return sum(1 for mark in self.marks if mark.problem is not None)


def fire(
    due: Sequence[Mapping[str, Any]], *, now: datetime, clock: Clock, jobs: PeriodicJobs
) -> Firing:
    """Decide the writes for `due` timers, fired at `now`.

    Each timer is its `timers` columns and `cancelled`: whether a cancellation of its group
    cancels it (`infra.scheduler.timers.CANCELLED_SQL`).
    """
    firing = Firing()
    for timer in due:
        key = timer["key"]
        following = jobs.following(timer["timer_group"], timer["due_at"], now)
        if following is not None:
            firing.following.append(following)
        if timer["cancelled"]:
            firing.marks.append(Mark(key, None, now, None, None))
            continue
        try:
            command = command_of(timer)
        except (ContractError, TypeError, ValueError) as exc:
            firing.marks.append(Mark(key, now, None, None, f"{type(exc).__name__}: {exc}"))
            continue
        envelope = command_envelope(command, context=fired_context(timer), clock=clock)
        firing.envelopes.append(envelope)
        firing.keys.append(key)
        firing.marks.append(Mark(key, now, None, envelope.id, None))
        firing.lags.append(max(0.0, (now - timer["due_at"]).total_seconds()))
    return firing
