"""Quiet hours: validation, same-day and overnight ranges, the end across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from pydantic import ValidationError

from domain.quiet_hours import QuietHours, quiet_until

NIGHT = QuietHours(start=time(22), end=time(7), time_zone="Europe/Paris")


def _utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_none_is_never_quiet() -> None:
    assert quiet_until(None, _utc(2026, 1, 1, 3)) is None


def test_an_overnight_range_holds_before_and_after_midnight_and_ends_at_the_local_end() -> None:
    # January, Paris is UTC+1: 22:00-07:00 local is 21:00-06:00 UTC
    assert quiet_until(NIGHT, _utc(2026, 1, 10, 21, 30)) == _utc(2026, 1, 11, 6)
    assert quiet_until(NIGHT, _utc(2026, 1, 11, 2)) == _utc(2026, 1, 11, 6)
    assert quiet_until(NIGHT, _utc(2026, 1, 10, 21)) == _utc(2026, 1, 11, 6)  # start included


def test_outside_an_overnight_range_is_not_quiet_and_the_end_is_excluded() -> None:
    assert quiet_until(NIGHT, _utc(2026, 1, 11, 6)) is None  # 07:00 local: over
    assert quiet_until(NIGHT, _utc(2026, 1, 11, 12)) is None
    assert quiet_until(NIGHT, _utc(2026, 1, 10, 20, 59)) is None


def test_a_same_day_range() -> None:
    lunch = QuietHours(start=time(12), end=time(13, 30), time_zone="UTC")
    assert quiet_until(lunch, _utc(2026, 5, 1, 12, 15)) == _utc(2026, 5, 1, 13, 30)
    assert quiet_until(lunch, _utc(2026, 5, 1, 11, 59)) is None
    assert quiet_until(lunch, _utc(2026, 5, 1, 13, 30)) is None


def test_the_end_follows_daylight_saving_time() -> None:
    # Paris springs forward on 29 March 2026: 23:30 CET (UTC+1), ends 07:00 CEST (UTC+2)
    assert quiet_until(NIGHT, _utc(2026, 3, 28, 22, 30)) == _utc(2026, 3, 29, 5)
    # and falls back on 25 October 2026: 23:30 CEST (UTC+2), ends 07:00 CET (UTC+1)
    assert quiet_until(NIGHT, _utc(2026, 10, 24, 21, 30)) == _utc(2026, 10, 25, 6)


def test_an_end_in_the_spring_forward_gap_lands_just_after_it() -> None:
    early = QuietHours(start=time(1), end=time(2, 30), time_zone="Europe/Paris")
    # 01:30 CET on 29 March; 02:30 does not exist: read as UTC+1, i.e. 01:30 UTC = 03:30 CEST
    assert quiet_until(early, _utc(2026, 3, 29, 0, 30)) == _utc(2026, 3, 29, 1, 30)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        quiet_until(NIGHT, datetime(2026, 1, 1, 3))  # noqa: DTZ001


@pytest.mark.parametrize(
    "fields",
    [
        {"start": "22:00", "end": "22:00", "time_zone": "UTC"},
        {"start": "22:00", "end": "07:00", "time_zone": "Mars/Olympus"},
        {"start": "22:00", "end": "07:00", "time_zone": "../etc/passwd"},
        {"start": "22:00:30", "end": "07:00", "time_zone": "UTC"},
        {"start": "22:00+01:00", "end": "07:00", "time_zone": "UTC"},
        {"start": "25:00", "end": "07:00", "time_zone": "UTC"},
        {"start": "22:00", "time_zone": "UTC"},
        {"start": "22:00", "end": "07:00", "time_zone": "UTC", "extra": 1},
    ],
)
def test_invalid_quiet_hours_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        QuietHours.model_validate(fields)


def test_quiet_hours_read_from_json() -> None:
    hours = QuietHours.model_validate_json(
        '{"start": "22:00", "end": "07:00", "time_zone": "Europe/Paris"}'
    )
    assert hours == NIGHT
