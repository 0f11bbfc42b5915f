"""The comparison for the sink benchmark: quixstreams' file sink writing Parquet.

``python -m benchmarks.sink_quix --run ETL_ID --directory lake`` reads a run topic from its
start with a consumer group of its own, decodes each value into the same row the sink
writes (``sluiceway.sinks.rows.event_row``), hands it to quixstreams' ``LocalFileSink`` with its
``ParquetFormat`` (zstd, like the sink), and stops once every partition's end marker was
read. It prints one JSON line: rows, first-message and done times (``time.time()``).

Kafka settings come from the environment (``SLUICEWAY_KAFKA_*``), as for ``sluiceway``.
The directory must be relative: quixstreams refuses paths with characters such as ``-``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models.serializers import Deserializer, SerializationContext
from quixstreams.sinks.community.file.formats.parquet import ParquetFormat
from quixstreams.sinks.community.file.local import LocalFileSink

from sluiceway.common.codec import MAGIC, Codec
from sluiceway.common.kafka_io import client_config, load_run
from sluiceway.common.run_schema import run_event_schemas
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings
from sluiceway.common.spec import schema_spec_of_run
from sluiceway.sinks.rows import event_row

MARKER: dict[str, Any] = {"__end_marker__": True}


class RowDeserializer(Deserializer):
    """Run-topic value -> lake row; an end marker (JSON, not Avro) -> ``MARKER``."""

    def __init__(self, record: RunRecord) -> None:
        super().__init__()
        base = Codec()
        schemas = run_event_schemas(schema_spec_of_run(record.spec, record.etl_id), base)
        self.codec = base.with_schemas(schemas.values())
        self.columns = {e: [f["name"] for f in s.record["fields"]] for e, s in schemas.items()}
        self.etl_id = record.etl_id
        self.first_at: float | None = None

    def __call__(self, value: bytes, ctx: SerializationContext) -> dict[str, Any]:
        if value[:2] != MAGIC:
            return MARKER
        if self.first_at is None:
            self.first_at = time.time()
        event = self.codec.decode(value)
        return event_row(event, self.etl_id, self.columns[event["entity"]])


def build(record: RunRecord, kafka: KafkaSettings, directory: str) -> tuple[Application, Any]:
    """The application and a dict of counters its callbacks update."""
    app = Application(
        # the same servers and security every Sluiceway client uses
        broker_address=ConnectionConfig.from_librdkafka_dict(client_config(kafka)),
        consumer_group=f"sw-bench-quix-{record.etl_id}",
        auto_offset_reset="earliest",
        state_dir=str(Path(directory).parent / "quix-state"),
        use_changelog_topics=False,
        auto_create_topics=False,
        loglevel="WARNING",
    )
    decode = RowDeserializer(record)
    topic = app.topic(record.run_topic, value_deserializer=decode, key_deserializer="bytes")
    counts: dict[str, Any] = {"rows": 0, "markers": 0, "decoder": decode}

    def keep(row: dict[str, Any]) -> bool:
        if row is MARKER:
            counts["markers"] += 1
            if counts["markers"] >= record.run_partitions:
                app.stop()  # the loop ends; run() then flushes the sink's last batch
            return False
        counts["rows"] += 1
        return True

    sdf = app.dataframe(topic).filter(keep)
    sdf.sink(LocalFileSink(directory=directory, format=ParquetFormat(compression="zstd")))
    return app, counts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sink_quix", description=__doc__)
    p.add_argument("--run", required=True, help="etl_id of a processed run")
    p.add_argument("--directory", default="lake", help="relative output directory")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    kafka = KafkaSettings()
    record = load_run(kafka, args.run)
    app, counts = build(record, kafka, args.directory)
    app.run()
    done = time.time()
    stats = {"rows": counts["rows"], "first_at": counts["decoder"].first_at, "done_at": done}
    sys.stdout.write(json.dumps(stats) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
