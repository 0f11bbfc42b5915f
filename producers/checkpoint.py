"""Capture's own progress, kept on the compacted ``sw.control.capture`` topic.

Kafka holds it so that a restarted capture (on any machine) knows whether the initial
snapshot finished, from which position, and which tables or key ranges are done.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Producer

from sluiceway.common.kafka_io import ensure_topics, read_control
from sluiceway.common.settings import KafkaSettings
from sluiceway.producers.errors import ProduceError

# (tenant, record key columns...): ints stay ints, other key columns are read as text
Key = tuple[Any, ...]


@dataclass
class Checkpoint:
    slot: str
    consistent_lsn: int
    snapshot_done: bool = False
    # per table: the last (tenant_id, *record key) published and acknowledged; "done" tables
    # listed
    last_key: dict[str, list[Any]] = field(default_factory=dict)
    tables_done: list[str] = field(default_factory=list)
    # when the slot reached its consistent point (ISO 8601): every snapshot event's source_ts,
    # kept so a resumed snapshot stamps its rows with the same time as the first attempt
    consistent_at: str | None = None

    def resume_after(self, table: str) -> Key | None:
        key = self.last_key.get(table)
        return (str(key[0]), *key[1:]) if key else None


def load(kafka: KafkaSettings, slot: str) -> Checkpoint | None:
    value = read_control(kafka, "capture").get(slot.encode())
    return Checkpoint(**json.loads(value)) if value else None


def ensure_topic(kafka: KafkaSettings) -> None:
    ensure_topics(kafka, [kafka.control_topic("capture")], 1, {"cleanup.policy": "compact"})


def save(kafka: KafkaSettings, prod: Producer, checkpoint: Checkpoint, timeout: float) -> None:
    """Record progress only after every event produced before it is acknowledged."""
    if prod.flush(timeout) != 0:
        raise ProduceError("Kafka did not acknowledge captured events in time")
    value = json.dumps(asdict(checkpoint)).encode()
    prod.produce(kafka.control_topic("capture"), key=checkpoint.slot.encode(), value=value)
    if prod.flush(timeout) != 0:
        raise ProduceError("Kafka did not acknowledge the capture checkpoint in time")
