"""Topics are created with their class's durability, and weaker ones are reported."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from sluiceway.common.kafka_io import admin, ensure_topics
from sluiceway.common.settings import KafkaSettings
from sluiceway.kafka_check import cluster_warnings, durability_problems

pytestmark = pytest.mark.integration


def _min_insync(kafka: KafkaSettings, topic: str) -> str:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = admin(kafka)  # kept: the future fails if its client is collected first
    configs = client.describe_configs([resource])[resource].result(10)
    return str(configs["min.insync.replicas"].value)


def test_created_topics_match_their_settings(kafka: KafkaSettings) -> None:
    run_topic = kafka.run_topic("durable")
    ensure_topics(kafka, [run_topic], 2)
    meta = admin(kafka).list_topics(run_topic, timeout=10).topics[run_topic]
    assert [len(p.replicas) for p in meta.partitions.values()] == [1, 1]
    assert _min_insync(kafka, run_topic) == "1"
    assert durability_problems(kafka) == []


def test_weaker_topics_are_reported(kafka: KafkaSettings) -> None:
    run_topic, dlq_topic = kafka.run_topic("weak"), kafka.dlq_topic("sink")
    ensure_topics(kafka, [run_topic, dlq_topic], 1)
    stricter = kafka.model_copy(update={"run_replication": 2, "dlq_min_insync": 2})
    assert durability_problems(stricter) == [
        f"topic {dlq_topic}: min.insync.replicas 1, below the 2 wanted for dlq topics "
        "(SLUICEWAY_KAFKA_DLQ_MIN_INSYNC); raise it with kafka-configs --alter",
        f"topic {run_topic}: replication factor 1, below the 2 wanted for run topics "
        "(SLUICEWAY_KAFKA_RUN_REPLICATION); recreate it or add replicas with "
        "kafka-reassign-partitions",
    ]


def test_a_single_broker_is_a_warning(kafka: KafkaSettings) -> None:
    (line,) = cluster_warnings(kafka)
    assert "has 1 broker(s)" in line and "at least 3" in line


def test_replicas_beyond_the_cluster_is_one_clear_line(kafka: KafkaSettings) -> None:
    from sluiceway.common.errors import ConfigError

    too_many = kafka.model_copy(update={"change_replication": 3})
    with pytest.raises(ConfigError, match=r"cannot create topic .*cdc\.issue on 1 broker\(s\)"):
        ensure_topics(too_many, [too_many.cdc_topic("issue")], 1)


def test_check_reports_a_topic_below_its_setting(kafka: KafkaSettings) -> None:
    import json

    from sluiceway.common.settings import PostgresSettings
    from tests.conftest import Cli, settings_env

    ensure_topics(kafka, [kafka.run_topic("weak")], 1)
    env = settings_env(kafka, PostgresSettings(), {"SLUICEWAY_KAFKA_RUN_REPLICATION": "2"})
    proc = Cli(env)("check", "--json", check=False)
    found = {f["name"]: f for f in json.loads(proc.stdout)["checks"]}
    assert found["kafka durability"]["ok"] is False
    assert f"topic {kafka.run_topic('weak')}: replication factor 1, below the 2" in str(
        found["kafka durability"]["detail"]
    )
    assert "has 1 broker(s)" in str(found["kafka cluster"]["detail"])
