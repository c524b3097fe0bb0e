"""Quiet hours: a person's nightly (or daily) window in which e-mail and chat are held.

`QuietHours(start, end, time_zone)`: local wall-clock times in an IANA zone (`zoneinfo`).
`start == end` is refused (an empty or a whole-day window says nothing useful). `start >
end` is an overnight range (22:00-07:00 holds from 22:00 to 07:00 the next morning).

`quiet_until(hours, now)` is the one question delivery asks: is `now` within the quiet
hours, and if so, when do they end (an aware UTC instant), else None. Daylight saving time is
the zone's: the end is the local `end` on its day, resolved by `zoneinfo` (a local time that
a spring-forward skips is read with `fold=0`, i.e. as the offset before the change, which
lands just after the gap; an ambiguous autumn time is its first occurrence).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise ValueError(f"{name!r} is not an IANA time zone") from error
    return name


def _minute(value: time) -> time:
    if value.tzinfo is not None or value.second or value.microsecond:
        raise ValueError("a local time in whole minutes, without a zone (HH:MM)")
    return value


LocalTime = Annotated[time, AfterValidator(_minute)]


class QuietHours(BaseModel):
    """From `start` to `end` (local times in `time_zone`), e-mail and chat below urgent wait."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: LocalTime
    end: LocalTime
    time_zone: Annotated[str, AfterValidator(_zone)]

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


def quiet_until(hours: QuietHours | None, now: datetime) -> datetime | None:
    """When the quiet hours around `now` end (UTC), or None if `now` is not within them."""
    if hours is None:
        return None
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(hours.time_zone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if hours.start < hours.end:  # within one day
        if not hours.start <= clock < hours.end:
            return None
        end_day = local.date()
    elif clock >= hours.start:  # overnight, before midnight: ends tomorrow
        end_day = local.date() + timedelta(days=1)
    elif clock < hours.end:  # overnight, after midnight: ends today
        end_day = local.date()
    else:
        return None
    end = datetime.combine(end_day, hours.end, tzinfo=zone)
    return end.astimezone(UTC)
