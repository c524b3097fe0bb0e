"""Periodic jobs: a command sent on a cron schedule, each occurrence once, as a timer.

A job's next occurrence is always kept as one timer (key `periodic:<name>:<occurrence>`,
group `periodic:<name>`). The scheduler writes the following occurrence's timer in the
transaction that fires the current one, and at the start of each leadership term arms the
jobs that have none. So every occurrence fires once, across restarts and failovers: a key
fires at most once, and an occurrence missed while no scheduler ran fires once when one
starts again (the backlog is skipped: the next one is after that moment).

Cron expressions are evaluated with cronsim (the five-field syntax, plus `L`, `W`, `#` and
the `@daily`-style aliases), in the job's time zone, so a daily 09:00 stays 09:00 local
across daylight saving time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from events import Command
from infra.message_context import MessageContext
from infra.scheduler.timers import SCHEDULER_ACTOR, timer_row

__all__ = ["PERIODIC_PREFIX", "PeriodicJob", "PeriodicJobs"]

PERIODIC_PREFIX = "periodic:"

# The command of one occurrence, given its time (UTC).
CommandFactory = Callable[[datetime], Command]


@dataclass(frozen=True)
class PeriodicJob:
    """A command to send at every occurrence of a cron expression."""

    name: str
    cron: str
    command: CommandFactory = field(compare=False)
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ValueError(f"a periodic job's name is non-empty, without ':': {self.name!r}")
        try:
            CronSim(self.cron, datetime.now(self.zone))
        except CronSimError as exc:
            raise ValueError(f"job {self.name}: bad cron expression {self.cron!r}: {exc}") from exc

    @property
    def zone(self) -> ZoneInfo:
        """The time zone the expression is read in."""
        return ZoneInfo(self.timezone)

    @property
    def group(self) -> str:
        """The timer group of its occurrences."""
        return f"{PERIODIC_PREFIX}{self.name}"

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (aware), in UTC."""
        occurrence: datetime = next(iter(CronSim(self.cron, moment.astimezone(self.zone))))
        return occurrence.astimezone(UTC)

    def timer(self, occurrence: datetime) -> tuple[object, ...]:
        """The `timers` row of one occurrence: its own key and a correlation of its own."""
        return timer_row(
            key=f"{self.group}:{occurrence.astimezone(UTC).isoformat()}",
            due=occurrence,
            command=self.command(occurrence),
            group=self.group,
            context=MessageContext.start(SCHEDULER_ACTOR),
        )


class PeriodicJobs(Mapping[str, PeriodicJob]):
    """The registry of periodic jobs, by name (names are unique)."""

    def __init__(self, jobs: Iterable[PeriodicJob] = ()) -> None:
        self._jobs: dict[str, PeriodicJob] = {}
        for job in jobs:
            if job.name in self._jobs:
                raise ValueError(f"two periodic jobs named {job.name}")
            self._jobs[job.name] = job

    def __getitem__(self, name: str) -> PeriodicJob:
        return self._jobs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def of_group(self, group: str) -> PeriodicJob | None:
        """The job whose occurrences form `group`, if any."""
        if not group.startswith(PERIODIC_PREFIX):
            return None
        return self._jobs.get(group.removeprefix(PERIODIC_PREFIX))

    def following(
        self, group: str, occurrence: datetime, now: datetime
    ) -> tuple[object, ...] | None:
        """The timer of a job's next occurrence once `occurrence` fired at `now`, if a job's.

        After `now`, not after `occurrence`: occurrences missed while no scheduler ran are
        skipped (the one that was due fires, once).
        """
        job = self.of_group(group)
        if job is None:
            return None
        return job.timer(job.next_after(max(occurrence, now)))
