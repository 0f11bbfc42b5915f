"""``sluiceway capture``: snapshot, then stream every change, until stopped.

create the change topics -> find the slot -> (pgoutput) create or check the publication
-> create the slot if missing -> snapshot what is not yet published -> stream from the
slot, confirming only what Kafka acknowledged.
A lost source connection is retried with backoff; nothing is ever skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime

import psycopg2
from confluent_kafka import Producer

from sluiceway.common import heap
from sluiceway.common.codec import Codec
from sluiceway.common.entities import entity_names
from sluiceway.common.health import HEALTH
from sluiceway.common.kafka_io import check_credentials, ensure_topics, producer
from sluiceway.producers import checkpoint as ckpt
from sluiceway.producers import indexer, metrics
from sluiceway.producers.acks import AckTracker
from sluiceway.producers.config import CaptureSettings
from sluiceway.producers.db import connect
from sluiceway.producers.errors import SourceUnavailableError
from sluiceway.producers.events import position
from sluiceway.producers.publication import ensure_publication
from sluiceway.producers.schema_check import check_source_schema
from sluiceway.producers.slot import create_slot, inspect_slot, replication_connection
from sluiceway.producers.snapshot import Progress, SnapshotRun, run_snapshot
from sluiceway.producers.stream import Streamer
from sluiceway.producers.tenant_tables import live_tables, published_tables

log = logging.getLogger("sluiceway.capture")
Stop = Callable[[], bool]
MIN_BACKOFF_S = 0.5
HEALTHY_S = 30.0


def create_change_topics(settings: CaptureSettings) -> None:
    kafka = settings.kafka
    check_credentials(kafka)
    ensure_topics(
        kafka,
        [kafka.cdc_topic(e) for e in entity_names()],
        kafka.partitions,
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"},
    )
    ensure_topics(kafka, [kafka.control_topic("tenants")], 1, {"cleanup.policy": "compact"})
    ckpt.ensure_topic(kafka)


def capture_producer(settings: CaptureSettings) -> Producer:
    # message.timeout.ms=0: wait out a Kafka outage instead of failing deliveries.
    return producer(settings.kafka, **{"message.timeout.ms": 0})


def snapshot_once(
    settings: CaptureSettings, codec: Codec, progress: Progress | None
) -> dict[str, int]:
    """A one-off consistent snapshot without a slot (no streaming afterwards)."""
    check_source(settings, codec, streaming_only=False)
    create_change_topics(settings)
    run = SnapshotRun(settings, codec, capture_producer(settings), None, None, progress)
    done = run_snapshot(run, None)
    if settings.kafka.tenant_index != "off":
        # no capture service follows to keep the index: bring it up to date now
        indexer.Indexer(settings.kafka, lambda: True).catch_up()
    return done


def run(
    settings: CaptureSettings, codec: Codec, stop: Stop, progress: Progress | None = None
) -> None:
    """Capture until ``stop()``; reconnect with backoff when the source goes away."""
    create_change_topics(settings)
    metrics.serve(settings.tuning.metrics_port)
    indexing = indexer.start(settings.kafka, stop) if settings.kafka.tenant_index != "off" else None
    prod = capture_producer(settings)
    heap.settle()  # start-up is done: its objects are no collector's business
    try:
        _capture_until_stopped(settings, codec, prod, stop, progress)
    finally:
        # however capture ends (stopped, refused, failed), no Kafka client may still be at
        # work on another thread when the interpreter shuts down
        if indexing is not None:
            indexing.close()
        prod.flush(settings.tuning.flush_timeout_s)


def _capture_until_stopped(
    settings: CaptureSettings, codec: Codec, prod: Producer, stop: Stop, progress: Progress | None
) -> None:
    backoff = MIN_BACKOFF_S
    while not stop():
        started = time.monotonic()
        try:
            _capture(settings, codec, prod, stop, progress)
            return
        except (SourceUnavailableError, psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if time.monotonic() - started > HEALTHY_S:
                backoff = MIN_BACKOFF_S  # it had been working: retry soon
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("source connection lost (%s); reconnecting in %.1fs", first, backoff)
            HEALTH.ready(False, f"source connection lost: {first}")
            metrics.RECONNECTS.inc()
            _sleep_unless(stop, backoff)
            backoff = min(backoff * 2, settings.tuning.reconnect_max_s)


def _sleep_unless(stop: Stop, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop():
        HEALTH.beat()  # waiting out the backoff on purpose: alive, and /readyz says why
        time.sleep(0.1)


def check_source(settings: CaptureSettings, codec: Codec, streaming_only: bool) -> None:
    """A snapshot reads the catalog's columns, so only capture that resumes streaming (its
    snapshot done) may accept the drops and widenings a schema version carries."""
    with closing(connect(settings.pg)) as conn:
        check_source_schema(conn, codec, carry_versions=streaming_only)


def prepare_publication(settings: CaptureSettings, slot_exists: bool) -> None:
    """pgoutput reads a publication: make sure it exists, covering every captured table,
    before the slot does (see producers/publication.py)."""
    tuning = settings.tuning
    if tuning.plugin != "pgoutput":
        return
    with closing(connect(settings.pg)) as conn:
        if ensure_publication(conn, tuning.publication, tuning.slot, slot_exists):
            log.info("created publication %s for the captured tables", tuning.publication)


def _capture(
    settings: CaptureSettings, codec: Codec, prod: Producer, stop: Stop, progress: Progress | None
) -> None:
    slot, plugin = settings.tuning.slot, settings.tuning.plugin
    state = ckpt.load(settings.kafka, slot)
    repl = replication_connection(settings.pg)
    try:
        info = inspect_slot(repl, slot, settings.pg.dbname, plugin)
        check_source(
            settings, codec, info is not None and state is not None and state.snapshot_done
        )
        HEALTH.ready(True, "snapshot")
        prepare_publication(settings, info is not None)
        if info is None:
            repl.close()
            new = create_slot(settings.pg, slot, plugin)
            repl, state = new.conn, ckpt.Checkpoint(slot, new.consistent_lsn)
            log.info("created slot %s at its consistent point", slot)
            _snapshot(settings, codec, prod, state, new.snapshot, progress)
            confirmed = new.consistent_lsn
        else:
            if state is None or not state.snapshot_done:
                state = state or ckpt.Checkpoint(slot, info.confirmed_lsn)
                log.info("resuming the snapshot of slot %s", slot)
                _snapshot(settings, codec, prod, state, None, progress)
            confirmed = info.confirmed_lsn
        Streamer(settings, codec, prod, AckTracker(confirmed), stop).run(repl)
    finally:
        repl.close()


def _snapshot(
    settings: CaptureSettings, codec: Codec, prod: Producer, state: ckpt.Checkpoint,
    snapshot_name: str | None, progress: Progress | None,
) -> None:  # fmt: skip
    # The snapshot shows the source as of the slot's consistent point: its events carry the
    # time the slot got there (close enough: taken just after), not when each row was read.
    state.consistent_at = state.consistent_at or datetime.now(UTC).isoformat()
    ckpt.save(settings.kafka, prod, state, settings.tuning.flush_timeout_s)
    point = (position(state.consistent_lsn, 0), datetime.fromisoformat(state.consistent_at))
    tuning = settings.tuning
    tables = published_tables(tuning.publication) if tuning.plugin == "pgoutput" else live_tables
    run_snapshot(SnapshotRun(settings, codec, prod, point, state, progress), snapshot_name, tables)
    state.snapshot_done = True
    ckpt.save(settings.kafka, prod, state, settings.tuning.flush_timeout_s)
