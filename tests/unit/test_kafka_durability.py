"""Topic durability per class: defaults by cluster size, explicit settings, bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluiceway.common.kafka_io import new_topic
from sluiceway.common.settings import KafkaSettings, settings_problem
from sluiceway.processors.fetch import DurableProducer


def test_defaults_follow_the_cluster_size() -> None:
    kafka = KafkaSettings()
    assert kafka.durability("change", brokers=1) == (1, 1)
    # two brokers: a cluster of two, or one of three with a broker down as the topic is
    # first created; either way two copies (a CI run saw a control topic left with one)
    assert kafka.durability("run", brokers=2) == (2, 1)
    assert kafka.durability("control", brokers=3) == (3, 2)
    assert kafka.durability("notifications", brokers=5) == (3, 2)


def test_explicit_settings_win_per_class() -> None:
    kafka = KafkaSettings(run_replication=2, dlq_replication=5, dlq_min_insync=3)
    assert kafka.durability("run", brokers=3) == (2, 1)
    assert kafka.durability("dlq", brokers=3) == (5, 3)
    assert kafka.durability("change", brokers=3) == (3, 2)


def test_topic_classes_from_names() -> None:
    kafka = KafkaSettings(topic_prefix="x.sw.")
    assert kafka.topic_class(kafka.cdc_topic("issue")) == "change"
    assert kafka.topic_class(kafka.run_topic("abc")) == "run"
    assert kafka.topic_class(kafka.control_topic("runs")) == "control"
    assert kafka.topic_class(kafka.dlq_topic("sink")) == "dlq"
    assert kafka.topic_class(kafka.notifications_topic) == "notifications"
    assert kafka.topic_class("__consumer_offsets") is None
    assert kafka.topic_class("other.cdc.issue") is None


def test_new_topics_carry_replicas_and_min_insync() -> None:
    kafka = KafkaSettings()
    topic = new_topic(kafka, kafka.cdc_topic("issue"), 3, 3, {"cleanup.policy": "compact"})
    assert topic.replication_factor == 3
    assert topic.config == {"min.insync.replicas": "2", "cleanup.policy": "compact"}


def test_min_insync_above_replicas_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_KAFKA_CHANGE_REPLICATION", "2")
    monkeypatch.setenv("SLUICEWAY_KAFKA_CHANGE_MIN_INSYNC", "3")
    with pytest.raises(ValidationError) as caught:
        KafkaSettings()
    line = settings_problem(caught.value)
    assert line is not None and "change_min_insync=3 exceeds change_replication=2" in line


def test_faust_producer_is_idempotent_outside_transactions() -> None:
    producer = DurableProducer.__new__(DurableProducer)
    producer.app = type("App", (), {"in_transaction": False})()  # type: ignore[assignment]
    assert producer._settings_extra() == {"acks": "all", "enable_idempotence": True}
