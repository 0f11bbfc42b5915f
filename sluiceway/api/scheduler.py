"""The thread that fires continuous feeds' due schedules, and the runs it starts.

Each tick starts the run of every due schedule (``sluiceway.api.schedules`` says what a
schedule is and when it is due next), records how the attempt went, follows the local
workers of the runs it started, and sweeps finished runs' Kafka leftovers. With Kafka away
the ticks pause instead of blocking.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from sluiceway.api.config_store import KafkaStore, KeyValueStore, datapipeline_spec
from sluiceway.api.schedules import Schedule, is_due, next_slot, pii_secret_env
from sluiceway.common import control_topics as control
from sluiceway.common.control_topics import ControlRecordError
from sluiceway.common.errors import ConfigError, RunConflictError, SluicewayError, StackDownError
from sluiceway.common.feed_timing import in_window
from sluiceway.common.kafka_io import check_broker, set_status
from sluiceway.common.redact import redact
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import SECRET_ENV, KafkaSettings, S3Settings
from sluiceway.common.spec import RunSpec, parse_spec
from sluiceway.control.cleanup import Sweeper
from sluiceway.control.export import ChainPolicyError, absolute_destination, worker_failure
from sluiceway.control.runner import Workers, log_dir, start_run

if TYPE_CHECKING:
    from sluiceway.lake.manifest import RunManifest

log = logging.getLogger("sluiceway.api.scheduler")

Clock = Callable[[], datetime]
Starter = Callable[[RunSpec], tuple[RunRecord, Workers | None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


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
