"""Writing run records straight onto the runs control topic, bypassing the destination claim,
for tests that need records the product would never write itself (old, odd or many)."""

from __future__ import annotations

from sluiceway.common.control_topics import CONTROL_TOPIC_CONFIG
from sluiceway.common.kafka_io import ensure_topics, producer
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings


def publish_run(kafka: KafkaSettings, record: RunRecord) -> None:
    topic = kafka.control_topic("runs")
    ensure_topics(kafka, [topic], 1, CONTROL_TOPIC_CONFIG)
    prod = producer(kafka, **{"linger.ms": 0})
    prod.produce(topic, key=record.etl_id.encode(), value=record.to_json())
    assert prod.flush(30) == 0, f"could not publish run {record.etl_id} to {topic}"
