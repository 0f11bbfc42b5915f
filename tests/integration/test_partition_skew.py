"""sluiceway check warns when one partition of the change topics holds most of the events
(a large tenant hashed there), and stays quiet when they are spread evenly."""

from __future__ import annotations

import json

import pytest

from sluiceway.common.kafka_io import create_topic, producer
from sluiceway.common.settings import KafkaSettings
from tests.conftest import Cli

pytestmark = pytest.mark.integration
MIN_EVENTS = "300"


def fill(kafka: KafkaSettings, entity: str, per_partition: dict[int, int]) -> None:
    topic = kafka.cdc_topic(entity)
    create_topic(kafka, topic, 3)
    prod = producer(kafka)
    for part, count in per_partition.items():
        for i in range(count):
            prod.produce(topic, key=f"t/{i}".encode(), value=b"x", partition=part)
    assert prod.flush(30) == 0


def partition_findings(cli: Cli) -> list[dict[str, object]]:
    env = {"SLUICEWAY_KAFKA_SKEW_MIN_EVENTS": MIN_EVENTS}
    report = json.loads(Cli({**cli.env, **env})("check", "--json", check=False).stdout)
    return [c for c in report["checks"] if c["name"] == "kafka partitions"]


def test_one_partition_holding_most_events_is_named(kafka: KafkaSettings, cli: Cli) -> None:
    # two co-partitioned topics: partition 2 holds 360 of 460 events in all (78%)
    fill(kafka, "alpha", {0: 20, 1: 20, 2: 200})
    fill(kafka, "beta", {0: 30, 1: 30, 2: 160})
    (finding,) = partition_findings(cli)
    assert finding["ok"] is True  # a warning, not a failure: the run can still go
    assert str(finding["detail"]).startswith(
        "warning: partition 2 holds 78% of the change topics' 460 events"
    )


def test_evenly_spread_events_give_no_warning(kafka: KafkaSettings, cli: Cli) -> None:
    fill(kafka, "alpha", {0: 150, 1: 140, 2: 160})
    assert partition_findings(cli) == []


def test_too_few_events_are_not_judged(kafka: KafkaSettings, cli: Cli) -> None:
    fill(kafka, "alpha", {0: 1, 1: 1, 2: 200})  # 202 events: below the minimum of 300
    assert partition_findings(cli) == []
