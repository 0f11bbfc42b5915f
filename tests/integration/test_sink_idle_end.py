"""A sink that holds no partition of its run ends when the run does, against the real Kafka.

The sink that completes a run writes the manifest and then drops the run's topic and
consumer groups. A second sink of the run holding no partition (a one-partition run topic,
two sinks) asks the group whether every partition ended: once the topic and group are
gone there is no commit to say so, and only the manifest does. A fresh-clone CI run saw
such a sink wait until its test timed out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import NewTopic

from sluiceway.common.kafka_io import admin, client_config
from sluiceway.common.settings import KafkaSettings
from sluiceway.lake import manifest
from sluiceway.sinks.consume import RunReader
from sluiceway.sinks.membership import all_ended
from sluiceway.sinks.offsets import OffsetTracker
from tests.polling import wait_for
from tests.unit.test_sink_avro_batch import reader_for
from tests.unit.test_sink_writer import run_record

pytestmark = pytest.mark.integration


def _idle_reader(kafka: KafkaSettings, tmp_path: Path, topic: str) -> RunReader:
    """A sink's reader of a one-partition run topic, in the run's group, owning nothing."""
    consumer = Consumer({
        **client_config(kafka), "group.id": f"{topic}.sink", "enable.auto.commit": False,
    })  # fmt: skip
    reader = reader_for(tmp_path)
    reader.topic, reader.consumer, reader.tracker = topic, consumer, OffsetTracker(1)
    return reader


def test_a_sink_owning_no_partition_ends_on_the_manifest_after_the_topic_is_dropped(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    topic = f"{kafka.topic_prefix}run.idle"
    client = admin(kafka)
    client.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    reader = _idle_reader(kafka, tmp_path, topic)
    try:
        assert not all_ended(reader)  # nothing ended, no manifest: the run goes on
        # what the finishing sink does: the manifest, then the run's topic goes
        record = run_record()
        assert record.etl_id == reader.plan.etl_id
        built = manifest.build_run_manifest(record, [], {"issue": "a", "comment": "b"}, "t1")
        manifest.write_manifests(reader.writer.lake, built)
        client.delete_topics([topic])[topic].result(30)
        wait_for(lambda: topic not in client.list_topics(timeout=10).topics, 30, "topic gone")
        reader.group_checked_at = 0.0  # the next check is due
        assert all_ended(reader)
    finally:
        reader.consumer.close()
