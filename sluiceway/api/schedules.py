"""Feeds' schedules: what a feed runs and how often, and when each is due next.

A schedule lives on ``control_topic("schedules")`` so it survives a restart of the server.
Its spec is the public one: a PII secret never goes to Kafka. A feed that hashes PII reads
``SLUICEWAY_PII_SECRET`` from the server's environment at each run instead.

Due times sit on a fixed grid (anchor + k * interval): a run that starts late does not push
later runs back (no drift), and after downtime the missed slots are skipped, not replayed
(no burst). A cron schedule follows the wall clock of its time zone instead.
The thread that fires due schedules is ``sluiceway.api.scheduler``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import Field, TypeAdapter
from pydantic_settings import SettingsConfigDict

from sluiceway.common.control_topics import ControlRecordError, with_extra
from sluiceway.common.feed_timing import window_bounds
from sluiceway.common.settings import SECRET_ENV
from sluiceway.common.settings_base import SluicewaySettings
from sluiceway.common.spec import RunSpec
from sluiceway.common.spec_errors import SpecError
from sluiceway.control.export import absolute_destination

DATAPIPELINE = "datapipeline"
MODES = ("delta", "full")


class FeedSettings(SluicewaySettings):
    """The shortest interval of a feed: every run creates a Kafka topic and consumer groups,
    which live until its manifest is written (see sluiceway.control.cleanup)."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_FEED_", frozen=True)

    min_interval_s: int = Field(
        60,
        ge=1,
        description="Shortest interval of a continuous feed or the Data pipeline schedule.",
    )


def interval_problem(interval_s: int) -> str | None:
    """Why a feed cannot run every ``interval_s`` seconds, or None when it can."""
    minimum = FeedSettings().min_interval_s
    if interval_s >= minimum:
        return None
    return (
        f"{interval_s} s is below the minimum of {minimum} s (SLUICEWAY_FEED_MIN_INTERVAL_S); "
        "every run creates Kafka topics and groups"
    )


@dataclass(frozen=True)
class Schedule:
    """A feed: which spec to run, how often, and how its last attempt went."""

    name: str
    spec: dict[str, Any] | None  # public spec; None: the Data pipeline config at each run
    mode: str  # "delta": a chain of deltas on a full export; "full": a full export each time
    interval_s: int
    anchor: datetime  # the grid's origin (Data pipeline's startTime)
    next_due: datetime
    needs_secret: bool = False
    last_etl_id: str | None = None
    last_error: str | None = None
    # A cron expression (croniter's) read in the IANA zone ``tz``: due times then follow the
    # wall clock of that zone across DST changes instead of the fixed grid.
    cron: str | None = None
    tz: str | None = None
    params: dict[str, Any] | None = None  # what the Data pipeline schedule was asked
    # fields of a newer version's record, kept so that storing it again keeps them
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["anchor"] = self.anchor.isoformat()
        data["next_due"] = self.next_due.isoformat()
        return {**data.pop("extra"), **data}

    @classmethod
    def from_json(cls, data: Any) -> Schedule:
        """The schedule; ControlRecordError naming the problem when the record is not one."""
        found = with_extra(cls, _SCHEDULE, data, "a schedule")
        if found.anchor.utcoffset() is None or found.next_due.utcoffset() is None:
            raise ControlRecordError("not a schedule (anchor and next_due need a UTC offset)")
        return found


_SCHEDULE = TypeAdapter(Schedule)


def is_due(schedule: Schedule, now: datetime) -> bool:
    return now >= schedule.next_due


def first_due(anchor: datetime, interval_s: int, now: datetime) -> datetime:
    """The first slot of the grid at or after ``now``; the anchor itself when still ahead."""
    if now <= anchor:
        return anchor
    step = timedelta(seconds=interval_s)
    slots = -((anchor - now) // step)  # ceil((now - anchor) / step) in exact integer steps
    return anchor + slots * step


def advance(next_due: datetime, interval_s: int, now: datetime) -> datetime:
    """The first slot strictly after ``now`` on ``next_due``'s grid: missed slots are skipped."""
    if now < next_due:
        return next_due
    step = timedelta(seconds=interval_s)
    return next_due + ((now - next_due) // step + 1) * step


def cron_next(cron: str, tz: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` names on ``tz``'s wall clock."""
    zone = ZoneInfo(tz)
    # Iterated on naive wall-clock times, then placed in the zone: croniter's own handling
    # of aware times keeps the offset it started with across a DST change.
    times = croniter(cron, after.astimezone(zone).replace(tzinfo=None))
    while True:
        found = times.get_next(datetime).replace(tzinfo=zone).astimezone(UTC)
        if found > after:  # a wall time repeated when clocks go back is taken once
            return found


def next_slot(schedule: Schedule, now: datetime) -> datetime:
    """When ``schedule`` is due next once ``now`` has passed its due time."""
    if schedule.cron is not None:
        if now < schedule.next_due:
            return schedule.next_due
        return cron_next(schedule.cron, schedule.tz or "UTC", now)
    # a schedule stored before the minimum was raised runs no more often than it allows
    interval = max(schedule.interval_s, FeedSettings().min_interval_s)
    following = advance(schedule.next_due, interval, now)
    window = (schedule.params or {}).get("full_window")
    if window is not None:  # the day's full starts when its window opens on the new day
        start, end = window_bounds(window)
        opens = start if start <= end else time(0, 0)
        today = datetime.combine(now.date(), opens, tzinfo=UTC)
        following = min(following, today if today > now else today + timedelta(days=1))
    return following


def feed_name(destination: str) -> str:
    """One feed per destination, since a destination takes one run at a time."""
    return "feed-" + hashlib.sha256(destination.encode()).hexdigest()[:12]


def pii_secret_env() -> str | None:
    return os.environ.get(SECRET_ENV) or None


def feed_of(spec: RunSpec, now: datetime) -> Schedule:
    """The schedule of a ``continuous`` spec; its first run is due now."""
    needs_secret = "hash" in spec.pii.values()
    if needs_secret:
        _check_feed_secret(spec)
    interval = int(spec.interval or 0)
    tz = spec.timezone or "UTC"
    problem = interval_problem(interval if spec.cron is None else _cron_gap(spec.cron, tz, now))
    if problem is not None:
        raise SpecError([("cron" if spec.cron else "interval", problem)])
    destination = absolute_destination(spec.destination)
    public = spec.model_copy(update={"destination": destination}).public_dict()
    return Schedule(
        name=feed_name(destination), spec=public, mode="daily" if spec.full_window else "delta",
        interval_s=interval, anchor=now, needs_secret=needs_secret, cron=spec.cron, tz=tz,
        next_due=now if spec.cron is None else cron_next(spec.cron, tz, now),
        params={"full_window": spec.full_window} if spec.full_window else None,
    )  # fmt: skip


def _cron_gap(cron: str, tz: str, now: datetime) -> int:
    """Seconds between the cron expression's next two times (a seconds field can fire often)."""
    first = cron_next(cron, tz, now)
    return int((cron_next(cron, tz, first) - first).total_seconds())


def _check_feed_secret(spec: RunSpec) -> None:
    env = pii_secret_env()
    given = spec.pii_secret.get_secret_value() if spec.pii_secret else None
    if env is None:
        problem = (
            f"a continuous feed that hashes PII reads its secret from {SECRET_ENV} at each "
            "run (secrets are never stored); set it in the server's environment"
        )
    elif given != env:
        problem = f"differs from the server's {SECRET_ENV}; every run of a feed must hash alike"
    else:
        return
    raise SpecError([("pii_secret", problem)])
