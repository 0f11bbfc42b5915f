"""Continuous feeds: schedules that start a run every interval, and the thread that fires them.

A schedule lives on ``control_topic("schedules")`` so it survives a restart of the server.
Its spec is the public one: a PII secret never goes to Kafka. A feed that hashes PII reads
``SLUICEWAY_PII_SECRET`` from the server's environment at each run instead.

Due times sit on a fixed grid (anchor + k * interval): a run that starts late does not push
later runs back (no drift), and after downtime the missed slots are skipped, not replayed
(no burst).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import Field, TypeAdapter
from pydantic_settings import SettingsConfigDict

from sluiceway.api.config_store import KafkaStore, KeyValueStore, datapipeline_spec
from sluiceway.common import control_topics as control
from sluiceway.common.control_topics import ControlRecordError, with_extra
from sluiceway.common.errors import ConfigError, RunConflictError, SluicewayError, StackDownError
from sluiceway.common.feed_timing import in_window, window_bounds
from sluiceway.common.kafka_io import check_broker, set_status
from sluiceway.common.redact import redact
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import SECRET_ENV, KafkaSettings, S3Settings
from sluiceway.common.settings_base import SluicewaySettings
from sluiceway.common.spec import RunSpec, parse_spec
from sluiceway.common.spec_errors import SpecError
from sluiceway.control.cleanup import Sweeper
from sluiceway.control.export import ChainPolicyError, absolute_destination, worker_failure
from sluiceway.control.runner import Workers, log_dir, start_run

if TYPE_CHECKING:
    from sluiceway.lake.manifest import RunManifest

log = logging.getLogger("sluiceway.api.scheduler")

DATAPIPELINE = "datapipeline"
MODES = ("delta", "full")

Clock = Callable[[], datetime]
Starter = Callable[[RunSpec], tuple[RunRecord, Workers | None]]


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


def utcnow() -> datetime:
    return datetime.now(UTC)


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


class Scheduler:
    """Holds the schedules, fires due ones from a background thread, and watches workers."""

    def __init__(
        self,
        kafka: KafkaSettings,
        s3: S3Settings,
        store: KeyValueStore | None = None,
        config: KeyValueStore | None = None,
        *,
        starter: Starter | None = None,
        chain_exists: Callable[[str], bool] | None = None,
        clock: Clock = utcnow,
        tick_s: float = 1.0,
        probe: Callable[[], None] | None = None,
        sweep: Callable[[], object] | None = None,
    ) -> None:
        self.kafka, self.s3 = kafka, s3
        self.store = store if store is not None else KafkaStore(kafka, "schedules")
        self.config = config if config is not None else KafkaStore(kafka, "config")
        self._starter = starter or (lambda spec: start_run(spec, kafka, s3))
        self._chain_exists = chain_exists or self.has_latest_manifest
        # Set by the Data pipeline endpoints: their schedule (spec None) starts a numbered job.
        self.job_starter: Callable[[Schedule], RunRecord] | None = None
        self.clock, self.tick_s = clock, tick_s
        # A quick broker check before each tick: with Kafka away, a tick would otherwise block
        # in a 30 s metadata call, and so would a SIGTERM waiting to join this thread.
        self._probe = probe or (lambda: check_broker(kafka, timeout=2.0))
        # drops finished runs' topics, groups and (much later) records (sluiceway.control.cleanup)
        self._sweep = sweep or Sweeper(kafka, s3)
        self._broker_down = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watched: dict[str, Workers] = {}
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    # -- the stored schedules -------------------------------------------------------------

    def all(self) -> list[Schedule]:
        """Every readable schedule; an unreadable record is reported and skipped."""
        found = []
        for name, value in self.store.load_all().items():
            try:
                found.append(Schedule.from_json(value))
            except ControlRecordError as exc:
                control.skipped("schedules", name, exc)
        return sorted(found, key=lambda s: s.name)

    def get(self, name: str) -> Schedule | None:
        return next((s for s in self.all() if s.name == name), None)

    def put(self, schedule: Schedule) -> None:
        self.store.put(schedule.name, schedule.to_json())

    def delete(self, name: str) -> bool:
        if self.get(name) is None:
            return False
        self.store.delete(name)
        return True

    # -- starting runs ----------------------------------------------------------------------

    def spec_for(self, schedule: Schedule) -> RunSpec:
        """The spec of the schedule's next run: delta when its chain exists, else full."""
        data = dict(schedule.spec or datapipeline_spec(self.config.load_all()))
        for timing in ("interval", "cron", "timezone", "full_window"):
            data.pop(timing, None)
        destination = absolute_destination(str(data["destination"]))
        if schedule.mode == "daily":
            data["type"] = self._daily_type(destination, (schedule.params or {})["full_window"])
        else:
            chain = schedule.mode == "delta" and self._chain_exists(destination)
            data["type"] = "delta" if chain else "full"
        if schedule.needs_secret:
            secret = pii_secret_env()
            if secret is None:
                raise ConfigError(f"{SECRET_ENV} is not set; the feed hashes PII and needs it")
            data["pii_secret"] = secret
        return parse_spec(data, source=f"schedule {schedule.name}")

    def _daily_type(self, destination: str, window: str) -> str:
        """Enterprise Insights' cadence: the day's full in its window, else a delta on the
        latest full, as long as that full is at most a day old."""
        now = self.clock().astimezone(UTC)
        self._chain_exists(destination)  # the destination check of the server's roots
        last_full = self.latest_full_date(destination)
        if last_full is None or last_full < now.date() - timedelta(days=1):
            return "full"
        due = last_full < now.date() and in_window(window, now.time())
        return "full" if due else "delta"

    def run_now(self, schedule: Schedule) -> RunRecord:
        """Start the schedule's run now; raises what ``start_run`` raises."""
        if schedule.spec is None and self.job_starter is not None:
            return self.job_starter(schedule)
        spec = self.spec_for(schedule)
        try:
            run, workers = self._starter(spec)
        except ChainPolicyError as exc:
            # the feed's spec or config changed how rows are made (an opt-out, a pii rule,
            # the secret): its chain cannot go on, so this run starts a new one
            log.warning("schedule %s: a new chain, with a full export: %s", schedule.name, exc)
            run, workers = self._starter(spec.model_copy(update={"type": "full"}))
        if workers is not None:
            self.watch(run.etl_id, workers)
        return run

    def fire(self, schedule: Schedule, now: datetime) -> Schedule:
        """Try a due schedule's run and return it advanced; errors are recorded, not raised."""
        nxt = next_slot(schedule, now)
        try:
            run = self.run_now(schedule)
        except RunConflictError as exc:
            # The previous run is still going: this slot is skipped, the next one will try.
            log.info("schedule %s: slot skipped: %s", schedule.name, exc)
            return replace(schedule, next_due=nxt)
        except Exception as exc:
            reason = _one_line(exc)
            log.warning("schedule %s: run not started: %s", schedule.name, reason)
            return replace(schedule, next_due=nxt, last_error=reason)
        log.info("schedule %s: started run %s", schedule.name, run.etl_id)
        return replace(schedule, next_due=nxt, last_etl_id=run.etl_id, last_error=None)

    def tick(self, now: datetime | None = None) -> list[Schedule]:
        """Fire every due schedule once; returns the schedules as they were stored."""
        moment = now or self.clock()
        fired = []
        for schedule in self.all():
            if is_due(schedule, moment):
                updated = self.fire(schedule, moment)
                self.put(updated)
                fired.append(updated)
        self.reap()
        return fired

    # -- workers launched here --------------------------------------------------------------

    def watch(self, etl_id: str, workers: Workers) -> None:
        """Follow a run's local workers so a crashed one marks its run failed."""
        with self._lock:
            self._watched[etl_id] = workers

    def reap(self) -> None:
        with self._lock:
            watched = list(self._watched.items())
        for etl_id, workers in watched:
            # a cancelled run's workers exit on our SIGTERM: that is no failure
            failure = (
                None if etl_id in self._cancelled else worker_failure(workers, log_dir(etl_id))
            )
            if failure:
                log.warning("run %s failed: %s", etl_id, failure)
                set_status(self.kafka, etl_id, "failed", failure)
            if failure or all(p.poll() is not None for p in workers.values()):
                with self._lock:
                    self._watched.pop(etl_id, None)
                    self._cancelled.discard(etl_id)

    def cancelled(self, etl_id: str) -> None:
        """The run was cancelled: its workers' exit codes no longer mark it failed."""
        with self._lock:
            self._cancelled.add(etl_id)

    # -- the thread -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="sluiceway-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def not_ready(self) -> str | None:
        """Why the scheduler cannot work now, or None while it can (the API's /readyz)."""
        if self._thread is None or not self._thread.is_alive():
            return "the scheduler is not running"
        if self._broker_down:
            return "Kafka does not answer the scheduler's probe"
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self._probe()
            except (StackDownError, ConfigError) as exc:  # ConfigError: credentials refused
                if not self._broker_down:  # once per outage, not once per second
                    log.warning("scheduler paused: %s", _one_line(exc))
                self._broker_down = True
                continue
            if self._broker_down:
                log.warning("scheduler resumed: Kafka answers again")
                self._broker_down = False
            try:
                self.tick()
            except Exception as exc:  # e.g. Kafka restarting mid-tick: the next tick retries
                log.warning("scheduler tick failed: %s", _one_line(exc))
            self._sweep()

    def latest_full_date(self, destination: str) -> date | None:
        """The date of the full export the destination's chain builds on, if any."""
        latest = self._latest_run(destination)
        return None if latest is None else latest.full_date()

    def has_latest_manifest(self, destination: str) -> bool:
        return self._latest_run(destination) is not None

    def _latest_run(self, destination: str) -> RunManifest | None:
        from sluiceway.lake import reader

        return reader.latest_run(reader.open_readonly(destination, self.s3))


def _one_line(exc: BaseException) -> str:
    text = redact(" ".join(str(exc).split())) or type(exc).__name__
    return text if isinstance(exc, SluicewayError) else f"{type(exc).__name__}: {text}"
