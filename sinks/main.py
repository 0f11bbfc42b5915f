"""The sink stage: roll one run's topic into Parquet files, then write its manifest.

load the run -> open the lake -> already complete? return its manifest
-> plan the tables -> clean up and adopt what an earlier attempt published
-> consume until every partition's end marker -> publish the last files
-> write the manifests -> commit past the end markers -> notify
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pyarrow.fs as pafs
from prometheus_client import start_http_server

from processors.run_schema import run_event_schemas
from processors.spec import schema_spec_of_run
from sinks import consume, layout, manifest, plan, recovery, storage
from sinks.config import SinkSettings
from sinks.consume import RunReader
from sinks.offsets import OffsetTracker
from sinks.storage import Lake
from sinks.writer import RunWriter
from sluiceway import kafka_io
from sluiceway.codec import Codec
from sluiceway.runs import RunRecord, etl_id_time
from sluiceway.settings import KafkaSettings, S3Settings

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
) -> dict[str, Any]:
    """Sink run ``etl_id`` into its destination; returns the run manifest."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    record = kafka_io.load_run(kafka, etl_id)
    lake = storage.open_lake(record.destination, s3, fs)
    done = manifest.read_json(lake, layout.run_manifest_path(etl_id))
    if done is not None:
        log.info("run %s already complete; republishing its manifest", etl_id)
        manifest.publish_latest(lake, done)
        return done
    if settings.metrics_port is not None:
        start_http_server(settings.metrics_port)
    spec = schema_spec_of_run(record.spec, etl_id)
    base = Codec(settings.schema_dir)
    writer_schemas = run_event_schemas(spec, base)
    codec = base.with_schemas(writer_schemas.values())
    tenants = (spec.remap.tenant,) if spec.remap else spec.tenants
    run_plan = plan.build_plan(record, writer_schemas, tenants, full_export_date(lake, record))
    writer = RunWriter(lake, etl_id, settings, clock, run_plan.table_dirs)
    writer.adopt(recovery.recover(lake, etl_id, run_plan.table_dirs))
    kafka_io.ensure_topics(
        kafka, [kafka.dlq_topic("sink"), kafka.notifications_topic], kafka.partitions
    )
    reader = _reader(kafka, record, codec, run_plan, writer)
    try:
        reader.consumer.subscribe([record.run_topic])
        consume.consume_until_complete(
            reader,
            settings.poll_batch,
            settings.poll_timeout_s,
            lambda: deadline is not None and time.monotonic() > deadline,
            progress,
        )
        return _finish(reader, lake, record, clock)
    finally:
        reader.consumer.close()


def _reader(
    kafka: KafkaSettings,
    record: RunRecord,
    codec: Codec,
    run_plan: plan.RunPlan,
    writer: RunWriter,
) -> RunReader:
    return RunReader(
        topic=record.run_topic,
        dlq_topic=kafka.dlq_topic("sink"),
        notify_topic=kafka.notifications_topic,
        consumer=kafka_io.consumer(kafka, f"sw-sink-{record.etl_id}"),
        producer=kafka_io.producer(kafka),
        codec=codec,
        plan=run_plan,
        writer=writer,
        tracker=OffsetTracker(record.run_partitions),
    )


def _finish(
    reader: RunReader, lake: Lake, record: RunRecord, clock: Callable[[], float]
) -> dict[str, Any]:
    reader.writer.close_all()
    consume.commit(reader)
    run_manifest = manifest.build_run_manifest(
        record,
        reader.writer.published,
        reader.plan.schema_versions,
        completed_at=datetime.fromtimestamp(clock(), UTC).isoformat(),
        dead_letters=reader.dead_letters + reader.upstream_dead_letters,
        full_export_date=reader.plan.full_export_date,
    )
    manifest.write_manifests(lake, run_manifest)
    reader.tracker.manifest_written = True
    consume.commit(reader)
    consume.notify(reader, run_manifest)
    log.info(
        "run %s complete: %d files, %d rows, %d bytes",
        record.etl_id,
        run_manifest["totals"]["files"],
        run_manifest["totals"]["rows"],
        run_manifest["totals"]["bytes"],
    )
    return run_manifest


def full_export_date(lake: Lake, record: RunRecord) -> date | None:
    """The date of the full export a delta run builds on, from the lake's manifest."""
    if record.type == "full":
        return None
    latest = (manifest.read_json(lake, layout.LATEST_MANIFEST) or {}).get("latest") or {}
    if latest.get("type") == "full":
        return etl_id_time(latest["etl_id"]).date()
    stamp = latest.get("full_export_date")
    return date.fromisoformat(stamp) if stamp else None
