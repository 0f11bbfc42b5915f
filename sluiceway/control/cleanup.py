"""Removing what a finished run leaves behind: its Kafka topics and consumer groups, then,
much later, its control records and its local log folder.

A run's topic and groups are only scaffolding: once its manifest is written, the lake holds
the result. The sink that writes the manifest drops them at once (``run_retention_s`` 0, the
default), or a later sweep does once that retention has passed, which keeps them around to
debug a run. A group with members is never deleted (a worker still uses it), and a run's
topics go only after its groups, so no consumer loses its topic.

Control records are compacted, so each key keeps its latest value; the sweep also writes
tombstones for finished runs older than ``record_retention_s``, so the registry, and every
status request reading it, does not grow forever.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sluiceway.common import control_topics as control
from sluiceway.common.entities import active_catalog
from sluiceway.common.errors import (
    ConfigError,
    RunAlreadyCompleteError,
    RunFailedError,
    SluicewayError,
    StackDownError,
)
from sluiceway.common.kafka_io import admin, producer, read_control
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.settings_base import SluicewaySettings
from sluiceway.control import registry
from sluiceway.processors.opt_out import cascade_of
from sluiceway.processors.scan import carrier_group

log = logging.getLogger("sluiceway.control.cleanup")
# What a group that is gone or still in use answers a delete with.
GONE = (KafkaError.GROUP_ID_NOT_FOUND, KafkaError.UNKNOWN_TOPIC_OR_PART)
IN_USE = (KafkaError.NON_EMPTY_GROUP,)
# Per-run records on these control topics are keyed by etl_id.
RUN_RECORDS = ("runs", "status", "notes")


class CleanupSettings(SluicewaySettings):
    """How long a finished run's leftovers are kept."""

    model_config = SettingsConfigDict(env_prefix="SLUICEWAY_CLEANUP_", frozen=True)

    run_retention_s: float = Field(
        0.0,
        ge=0,
        description="Keep a finished run's topic and consumer groups this long after it ended "
        "(to debug it); 0 drops them as soon as its manifest is written.",
    )
    record_retention_s: float = Field(
        30 * 86_400.0,
        ge=0,
        description="Keep a finished run's control records (runs, status, notes) and its local "
        "log folder this long after it ended; then the run leaves `GET /runs`.",
    )
    sweep_interval_s: float = Field(
        300.0, gt=0, description="Seconds between the sweeps of `serve` and of each pool."
    )


def run_groups(etl_id: str) -> list[str]:
    """The consumer groups of a run: its processors', its pre-pass scans' and its sinks'.

    An opt-out's pass before the run reads each entity the catalog's references judge, in a
    group named by that entity."""
    cascade = cascade_of(active_catalog())
    judged = [carrier_group(e, etl_id) for e in cascade.judged] if cascade else []
    return [f"sw-process-{etl_id}", f"sw-scan-{etl_id}", *judged, f"sw-sink-{etl_id}"]


def run_topics(run: RunRecord) -> list[str]:
    """The run topic, and the leader topic faust created for the processor group's assignor
    in runs of earlier versions (processors no longer declare it)."""
    return [run.run_topic, f"sw-process-{run.etl_id}-__assignor-__leader"]


def drop_run(kafka: KafkaSettings, run: RunRecord, timeout: float = 30.0) -> bool:
    """Delete the run's groups, then (once none is left) its topics; True when all are gone.

    A group that still has members is left alone: a later call (or sweep) retries."""
    client = admin(kafka)  # must outlive its futures: they resolve on its thread
    remaining = _delete(client.delete_consumer_groups(run_groups(run.etl_id)), timeout)
    if remaining:
        return False
    return not _delete(client.delete_topics(run_topics(run), operation_timeout=timeout), timeout)


def _delete(futures: dict[str, Future[Any]], timeout: float) -> list[str]:
    """Wait for deletions; the names still there (in use), others' errors raised."""
    remaining = []
    for name, fut in futures.items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code in IN_USE:
                remaining.append(name)
            elif code not in GONE:
                raise
    return remaining


def check_not_dropped(kafka: KafkaSettings, run: RunRecord, wait_s: float = 10.0) -> None:
    """Refuse to work on a run whose topic was dropped: the run has ended, and producing to
    the topic would only create it again (brokers may auto-create topics). Missing for
    ``wait_s``: a broker with stale metadata may not list a topic that was just created."""
    client = admin(kafka)
    deadline = time.monotonic() + wait_s
    while run.run_topic not in client.list_topics(timeout=30).topics:
        if time.monotonic() > deadline:
            _refuse_ended(kafka, run)
        time.sleep(0.5)


def _refuse_ended(kafka: KafkaSettings, run: RunRecord) -> None:
    """Why a run whose topic is gone has nothing left: complete (the worker's job is done,
    so a supervisor that restarted it sees success), failed or cancelled, or unknown."""
    found = registry.states(kafka, S3Settings(), lambda r: r.etl_id == run.etl_id)
    status = found[0].status if found else None
    if status == "complete":
        raise RunAlreadyCompleteError(f"run {run.etl_id} is complete; nothing is left to do")
    if status in ("failed", "cancelled"):
        reason = f": {found[0].reason}" if found[0].reason else ""
        raise RunFailedError(f"run {run.etl_id} was {status}{reason}")
    raise ConfigError(
        f"run {run.etl_id} has ended and its topic {run.run_topic} was deleted; "
        "nothing is left to process"
    )


def drop_when_idle(kafka: KafkaSettings, run: RunRecord, wait_s: float = 30.0) -> None:
    """After the manifest: drop the run's topics and groups unless kept for debugging, waiting
    a bounded time for the run's other workers to leave its groups. Never raises: the run is
    complete whatever happens here, and a sweep retries what is left."""
    if CleanupSettings().run_retention_s > 0:
        return
    deadline = time.monotonic() + wait_s
    try:
        while not drop_run(kafka, run):
            if time.monotonic() > deadline:
                log.info("run %s: a worker is still in its groups; a sweep drops them", run.etl_id)
                return
            time.sleep(1.0)
    except (KafkaException, StackDownError) as exc:
        log.warning("run %s: could not drop its topic and groups: %s", run.etl_id, exc)
        return
    log.info("run %s: dropped its topic and consumer groups", run.etl_id)


@dataclass(frozen=True)
class Swept:
    dropped: list[str]  # runs whose topics and groups were deleted
    expired: list[str]  # runs whose control records were deleted


def sweep(
    kafka: KafkaSettings,
    s3: S3Settings,
    settings: CleanupSettings | None = None,
    now: datetime | None = None,
) -> Swept:
    """Drop the topics and groups of runs that ended more than ``run_retention_s`` ago and
    expire the records of those that ended more than ``record_retention_s`` ago."""
    settings = settings or CleanupSettings()
    moment = now or datetime.now(UTC)
    client = admin(kafka)
    topics = set(client.list_topics(timeout=30).topics)
    groups = {g.group_id for g in client.list_consumer_groups().result(30).valid or []}
    recorded = control.decode_each("status", read_control(kafka, "status"), control.json_object)
    dropped, expired = [], []
    for state in registry.states(kafka, s3):
        if state.active:
            continue
        etl_id = state.run.etl_id
        age = (moment - _ended_at(state, recorded.get(etl_id, {}))).total_seconds()
        left = set(run_topics(state.run)) & topics or set(run_groups(etl_id)) & groups
        if left and age >= settings.run_retention_s:
            left = set() if drop_run(kafka, state.run) else left
            dropped += [] if left else [etl_id]
        if not left and age >= settings.record_retention_s:
            expire(kafka, etl_id, topics)
            expired.append(etl_id)
    return Swept(dropped, expired)


def _ended_at(state: registry.RunState, status: dict[str, Any]) -> datetime:
    """When a final run ended: its manifest's completion, its cancel or failure, else its start."""
    completed = state.manifest.completed_at if state.manifest else None
    for value in (completed, status.get("at")):
        try:
            found = datetime.fromisoformat(str(value))
        except ValueError:
            continue
        if found.utcoffset() is not None:
            return found
    return state.run.export_date


def expire(kafka: KafkaSettings, etl_id: str, topics: Iterable[str]) -> None:
    """Tombstone the run's control records and remove its log folder on this machine."""
    from sluiceway.control.runner import log_dir

    prod = producer(kafka, **{"linger.ms": 0})
    for name in RUN_RECORDS:
        if kafka.control_topic(name) in topics:  # producing would auto-create a missing one
            prod.produce(kafka.control_topic(name), key=etl_id.encode(), value=None)
    if prod.flush(30) != 0:
        raise StackDownError(f"could not delete the control records of run {etl_id}")
    shutil.rmtree(log_dir(etl_id), ignore_errors=True)
    log.info("run %s: expired its control records and log folder", etl_id)


class Sweeper:
    """Sweeps at most every ``sweep_interval_s``, the first time one interval after it is
    made (a process that starts does not stall on it); errors are logged, never raised."""

    def __init__(
        self,
        kafka: KafkaSettings,
        s3: S3Settings,
        settings: CleanupSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kafka, self.s3 = kafka, s3
        self.settings = settings or CleanupSettings()
        self.clock = clock
        self._next = clock() + self.settings.sweep_interval_s

    def __call__(self) -> Swept | None:
        if self.clock() < self._next:
            return None
        self._next = self.clock() + self.settings.sweep_interval_s
        try:
            return sweep(self.kafka, self.s3, self.settings)
        except (SluicewayError, KafkaException) as exc:
            log.warning("cleanup sweep failed (the next one retries): %s", exc)
            return None
