"""Bad events go to the dead-letter topic with the reason, are counted, and the run goes on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from sluiceway.kafka_io import consumer, producer
from sluiceway.partitioning import partition_for
from sluiceway.settings import KafkaSettings
from tests.conftest import Cli

pytestmark = pytest.mark.integration
TENANT = "tenant-001"


def inject(kafka: KafkaSettings, entity: str, key: bytes, value: bytes) -> None:
    part = partition_for(TENANT, 0, kafka.partitions, kafka.spread)
    prod = producer(kafka)
    prod.produce(kafka.cdc_topic(entity), key=key, value=value, partition=part)
    assert prod.flush(30) == 0


def dead_letters(
    kafka: KafkaSettings, expected: int
) -> list[tuple[bytes | None, dict[str, bytes]]]:
    reader = consumer(kafka, group=f"dlq-{time.monotonic_ns()}")
    reader.assign([TopicPartition(kafka.dlq_topic("processor"), 0, 0)])
    found: list[tuple[bytes | None, dict[str, bytes]]] = []
    deadline = time.monotonic() + 30
    while len(found) < expected and time.monotonic() < deadline:
        for msg in reader.consume(100, 0.5):
            if not msg.error():
                found.append((msg.key(), dict(msg.headers() or [])))
    reader.close()
    return found


# 60 issues fill a fetched batch past processors/batch.py's MIN_BATCH: the batch path meets
# the bad event and hands the batch to the per-event path, which dead-letters it alone.
@pytest.mark.parametrize("issues", [10, 60])
def test_bad_events_are_dead_lettered_counted_and_skipped(
    cli: Cli, kafka: KafkaSettings, tmp_path: Path, issues: int
) -> None:
    seeded = cli.json("source", "seed", "--tenants", "2", "--issues-per-tenant", str(issues))
    cli("capture", "--snapshot-only")
    inject(kafka, "issue", f"{TENANT}/999001".encode(), b"not avro at all")
    result = cli.json("export", "start", "--tenant", TENANT, "--dest", str(tmp_path), "--wait")
    status = cli.json("export", "status", result["etl_id"])
    assert status["dead_letters"] == 1
    assert status["status"] == "complete"
    assert result["rows"]["issue"] == issues  # the good rows all landed
    manifest = json.loads((tmp_path / "_runs" / f"{result['etl_id']}.json").read_text())
    assert manifest["dead_letters"] == 1
    [(key, headers)] = dead_letters(kafka, 1)
    assert key == f"{TENANT}/999001".encode()
    assert b"not Avro single-object encoded" in headers["sw-error"]
    assert headers["sw-etl-id"] == result["etl_id"].encode()
    assert headers["sw-topic"] == kafka.cdc_topic("issue").encode()
    assert seeded["rows"]["issue"] == 2 * issues
