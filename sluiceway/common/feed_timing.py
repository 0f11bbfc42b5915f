"""When a continuous feed runs: checks of its cron expression, time zone and full window.

A feed runs every ``interval`` seconds, or at the times a cron expression names on the wall
clock of a time zone (croniter reads it; DST changes are followed). A feed with a
``full_window`` keeps Enterprise Insights' cadence: one full export a day, in that UTC
window, and deltas every ``interval`` (whole hours, 1 to 24) between fulls, each building
on that day's full.
"""

from __future__ import annotations

import re
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic_core import PydanticCustomError

WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def check_cron(value: str | None) -> str | None:
    if value is not None and not croniter.is_valid(value.strip()):
        raise PydanticCustomError(
            "cron",
            "{value} is not a cron expression, e.g. '30 2 * * MON-FRI'",
            {"value": repr(value)},
        )
    return None if value is None else value.strip()


def check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone",
            "{value} is not an IANA time zone, e.g. Europe/Berlin",
            {"value": repr(value)},
        ) from None
    return value


def check_window(value: str | None) -> str | None:
    if value is not None and not WINDOW.match(value.strip()):
        raise PydanticCustomError(
            "full_window", "{value} is not a UTC window HH:MM-HH:MM, e.g. 23:00-06:00",
            {"value": repr(value)},
        )  # fmt: skip
    return None if value is None else value.strip()


def window_bounds(window: str) -> tuple[time, time]:
    start, _, end = window.partition("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def in_window(window: str, moment: time) -> bool:
    """Whether ``moment`` (UTC) lies in the window; a window may wrap past midnight."""
    start, end = window_bounds(window)
    if start <= end:
        return start <= moment < end
    return moment >= start or moment < end
