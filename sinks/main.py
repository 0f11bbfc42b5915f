"""The sink stage: roll one run's topic into Parquet files, then write its manifest.

load the run -> open the lake -> already complete? return its manifest
-> plan the tables -> clean up and adopt what an earlier attempt published
-> join the run's consumer group (several sinks share a run; sinks/membership.py)
-> consume until every partition has ended, in this sink or another
-> the first sink to see that lists the lake, writes the manifests and notifies
   (topic, then webhook); the others find the manifest and stop

A local destination short of free space pauses the consume loop (``disk_guard``); the
reason is recorded as the run's note so ``export status`` shows why it waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pyarrow.fs as pafs
from confluent_kafka import Consumer, KafkaException

from sluiceway.common import health, heap, kafka_io
from sluiceway.common.codec import Codec, EventSchema
from sluiceway.common.errors import SluicewayError
from sluiceway.common.health import HEALTH
from sluiceway.common.kafka_io import set_note
from sluiceway.common.run_schema import run_event_schema, run_event_schemas
from sluiceway.common.runs import RunRecord
from sluiceway.common.schema_registry import EvolvingCodec, registered
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.spec import RunSpec, schema_spec_of_run
from sluiceway.lake import manifest, storage
from sluiceway.lake import reader as lake_reader
from sluiceway.lake.manifest import RunManifest
from sluiceway.lake.storage import Lake
from sluiceway.sinks import consume, dp_layout, membership, notify, plan, recovery, sns
from sluiceway.sinks.config import SinkSettings
from sluiceway.sinks.consume import RunReader
from sluiceway.sinks.disk_guard import DiskGuard
from sluiceway.sinks.guard_config import GuardSettings
from sluiceway.sinks.metrics import LagMonitor
from sluiceway.sinks.offsets import OffsetTracker
from sluiceway.sinks.parquet_file import FileRecord
from sluiceway.sinks.sns import SnsSettings
from sluiceway.sinks.writer import RunWriter

log = logging.getLogger("sluiceway.sink")


def run(
    etl_id: str,
    kafka: KafkaSettings,
    s3: S3Settings,
    settings: SinkSettings,
    progress: Callable[[int], None] | None = None,
    timeout_s: float | None = None,
    *,
    clock: Callable[[], float] = time.time,
    fs: pafs.FileSystem | None = None,
    guard: GuardSettings | None = None,
    stopping: Callable[[], bool] = lambda: False,
    left_run: Callable[[RunRecord], None],
) -> RunManifest | None:
    """Sink run ``etl_id`` into its destination; returns the run manifest, or None when
    ``stopping`` said so first (files published, committed).

    ``left_run`` is called once this sink is done with a complete run and has left its
    consumer group; the command passes the control plane's cleanup, which the sink does not
    import (a stage never imports the layer that launches it)."""
    guard = guard or GuardSettings()
    sns_settings = SnsSettings()  # read first: a bad setting stops the sink before any work
    timed_out = _timed_out(None if timeout_s is None else time.monotonic() + timeout_s)
    record, lake = _open(etl_id, kafka, s3, fs)
    done = lake_reader.run_manifest(lake, etl_id)
    if done is not None:
        _republish(kafka, lake, record, done, guard, sns_settings)
        left_run(record)
        return done
    health.serve(settings.metrics_port)
    recovery.remove_manifest_temporaries(lake, etl_id)
    reader = _reader(kafka, record, lake, settings, clock, guard)
    heap.settle()  # start-up is done: its objects are no collector's business
    with _joined(reader, lake):
        poll = (settings.poll_batch, settings.poll_timeout_s)
        if not consume.consume_until_complete(reader, *poll, timed_out, progress, stopping):
            log.info("sink of run %s stopped before the run's end", etl_id)
            return None
        finished = _finish(reader, lake, record, clock, guard, sns_settings)
    left_run(record)  # after close: this sink has left the run's group
    return finished


def _timed_out(deadline: float | None) -> Callable[[], bool]:
    return lambda: deadline is not None and time.monotonic() > deadline


def _open(
    etl_id: str, kafka: KafkaSettings, s3: S3Settings, fs: pafs.FileSystem | None
) -> tuple[RunRecord, Lake]:
    """The run's orders and its destination, opened for writing."""
    kafka_io.check_credentials(kafka)
    record = kafka_io.load_run(kafka, etl_id)
    return record, storage.open_lake(record.destination, s3, fs)


def _republish(
    kafka: KafkaSettings, lake: Lake, record: RunRecord, done: RunManifest,
    guard: GuardSettings, sns_settings: SnsSettings,
) -> None:  # fmt: skip
    """The run is complete already. A sink that died between its manifest and its notice
    must still notify: at least once."""
    log.info("run %s already complete; republishing its manifest and notice", record.etl_id)
    manifest.publish_latest(lake, done)
    if record.spec.get("layout") == dp_layout.LAYOUT:  # parts left by a crash, if any
        dp_layout.remove_parts(lake, record.etl_id, plan.table_dirs(record).values())
        dp_layout.forget_joined(lake, record.etl_id)
    notice = consume.publish_notice(kafka_io.producer(kafka), kafka.notifications_topic, done)
    notify.deliver(notice, guard)
    sns.publish(done, notice, sns_settings)


@contextmanager
def _joined(reader: RunReader, lake: Lake) -> Iterator[None]:
    """In the run's consumer group (shared with the run's other sinks) until the block ends;
    the consumer is closed after it, and abandoned first on an error."""
    rebalancer = membership.Rebalancer(reader, lake)
    try:
        reader.consumer.subscribe(
            [reader.topic],
            on_assign=rebalancer.on_assign,
            on_revoke=rebalancer.on_revoke,
            on_lost=rebalancer.on_lost,
        )
        HEALTH.ready(True, f"consuming {reader.topic}")
        yield
    except BaseException:
        membership.abandon(reader)  # closing the consumer must not commit unwritten rows
        raise
    finally:
        reader.leaving = True
        reader.consumer.close()


def _reader(
    kafka: KafkaSettings,
    record: RunRecord,
    lake: Lake,
    settings: SinkSettings,
    clock: Callable[[], float],
    guard: GuardSettings,
) -> RunReader:
    """Plan the run's tables, adopt earlier files, and wire the consume loop's parts."""
    spec = schema_spec_of_run(record.spec, record.etl_id)
    base = Codec(settings.schema_dir)
    writer_schemas = run_event_schemas(spec, base)
    tenants = (spec.remap.tenant,) if spec.remap else spec.tenants
    run_plan = plan.build_plan(record, writer_schemas, tenants, full_export_date(lake, record))
    writer = RunWriter(lake, record.etl_id, settings, clock, run_plan.table_dirs, run_plan.format)
    if spec.layout == dp_layout.LAYOUT:
        writer.csv_columns = dp_layout.file_columns(spec)
    kafka_io.ensure_dlq_topics(kafka, ["sink"], kafka.partitions)
    kafka_io.ensure_topics(kafka, [kafka.notifications_topic], kafka.partitions)
    consumer = _consumer(kafka, record, settings)
    return RunReader(
        topic=record.run_topic,
        dlq_topic=kafka.dlq_topic("sink"),
        notify_topic=kafka.notifications_topic,
        consumer=consumer,
        producer=kafka_io.producer(kafka),
        codec=evolving_run_codec(base.with_schemas(writer_schemas.values()), kafka, spec, run_plan),
        plan=run_plan,
        writer=writer,
        tracker=OffsetTracker(record.run_partitions),
        guard=disk_guard(kafka, record.etl_id, lake, guard),
        lag=LagMonitor(consumer, record.run_topic, record.run_partitions, guard.lag_interval_s),
    )


def evolving_run_codec(
    codec: Codec, kafka: KafkaSettings, spec: RunSpec, run_plan: plan.RunPlan
) -> Codec:
    """``codec``, also reading run-topic values written with the run schema of a schema
    version capture registered after a change of a source table; the plan routes them."""

    def load() -> list[EventSchema]:
        found = [run_event_schema(v, spec) for v in registered(kafka) if v.entity in spec.entities]
        for schema in found:
            run_plan.learn(schema)
        return found

    return EvolvingCodec(codec, load)


def _consumer(kafka: KafkaSettings, record: RunRecord, settings: SinkSettings) -> Consumer:
    """A member of the run's consumer group (cooperative: sinks join and leave mid-run)."""
    # a modest fetch queue: librdkafka would otherwise prefetch up to 256 MB of the run topic
    group = {
        "queued.max.messages.kbytes": settings.fetch_queue_kbytes,
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": settings.session_timeout_ms,
        **({"group.instance.id": settings.member} if settings.member else {}),
    }
    return kafka_io.consumer(kafka, f"sw-sink-{record.etl_id}", **group)


def disk_guard(
    kafka: KafkaSettings, etl_id: str, lake: Lake, guard: GuardSettings
) -> DiskGuard | None:
    """A guard of the destination's free space; object stores have no disk to fill."""
    if not lake.local or guard.min_free_bytes < 0:
        return None

    def note(reason: str | None) -> None:
        try:
            set_note(kafka, etl_id, reason)
        except (SluicewayError, KafkaException) as exc:  # it only explains; waiting goes on
            log.warning("could not record the note of run %s: %s", etl_id, exc)

    return DiskGuard(
        lake.dest.root, guard.min_free_bytes, guard.disk_check_interval_s, on_change=note
    )


def _finish(
    reader: RunReader,
    lake: Lake,
    record: RunRecord,
    clock: Callable[[], float],
    guard: GuardSettings,
    sns_settings: SnsSettings,
) -> RunManifest:
    """Every partition has ended: write the manifests from what the lake holds, unless
    another sink of the run already has."""
    reader.writer.close_all()  # nothing is open once every partition ended; to be sure
    membership.commit(reader)
    done = lake_reader.run_manifest(lake, record.etl_id)
    if done is not None:
        log.info("run %s complete; another sink wrote its manifest", record.etl_id)
        return done
    partitions = list(range(record.run_partitions))
    commits = membership.read_commits(reader.consumer, record.run_topic, partitions)
    joined = record.spec.get("layout") == dp_layout.LAYOUT
    run_manifest = manifest.build_run_manifest(
        record,
        _run_files(lake, record, reader, joined),
        reader.plan.schema_versions,
        completed_at=datetime.fromtimestamp(clock(), UTC).isoformat(),
        dead_letters=sum(c.dead_letters + c.upstream for c in commits.values()),
        full_export_date=reader.plan.full_export_date,
    )
    manifest.write_manifests(lake, run_manifest)
    if joined:
        dp_layout.forget_joined(lake, record.etl_id)
    notice = consume.notify(reader, run_manifest)
    totals = run_manifest.totals
    log.info("run %s complete: %d files, %d rows, %d bytes",
             record.etl_id, totals.files, totals.rows, totals.bytes)  # fmt: skip
    notify.deliver(notice, guard)  # after the log line: a slow webhook never hides the result
    sns.publish(run_manifest, notice, sns_settings)
    return run_manifest


def _run_files(lake: Lake, record: RunRecord, reader: RunReader, joined: bool) -> list[FileRecord]:
    """The run's published files; in the Data pipeline layout, its parts joined first."""
    table_dirs = reader.plan.table_dirs
    if not joined:
        return recovery.published(lake, record.etl_id, table_dirs)
    settings = reader.writer.settings
    line_break = settings.csv_line_break_escape if settings.csv_escape_newlines else None
    spec = schema_spec_of_run(record.spec, record.etl_id)
    return dp_layout.join_once(
        lake, spec, record.etl_id, table_dirs.values(),
        lambda: recovery.published(lake, record.etl_id, table_dirs), line_break,
    )  # fmt: skip


def full_export_date(lake: Lake, record: RunRecord) -> date | None:
    """The date of the full export a delta run builds on, from the lake's manifest."""
    if record.type == "full":
        return None
    latest = lake_reader.latest_run(lake)
    return None if latest is None else latest.full_date()
