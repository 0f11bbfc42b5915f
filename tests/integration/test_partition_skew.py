"""sluiceway check against the real Kafka: a change topic whose one partition holds most of
its records (a large tenant placed there) is named with that partition, its share, the
threshold and the tenants placed there; evenly spread topics give no warning; change topics
with another partition count than kafka.partitions fail the check."""

from __future__ import annotations

import json

import pytest

from sluiceway.common.codec import event_key
from sluiceway.common.kafka_io import create_topic, ensure_topics, producer, watermarks
from sluiceway.common.partitioning import partition_for, tenant_partitions
from sluiceway.common.settings import KafkaSettings
from tests.conftest import Cli

pytestmark = pytest.mark.integration
MIN_RECORDS = 300
PARTS = 3


def tenants_based_at(part: int, count: int) -> list[str]:
    """Tenant ids whose (spread 1) partition of a 3-partition topic is ``part``."""
    found = (f"tenant-{i:03d}" for i in range(1000))
    return [t for t in found if tenant_partitions(t, PARTS) == {part}][:count]


def capture_like(kafka: KafkaSettings, entity: str, rows: dict[str, int]) -> str:
    """``rows[tenant]`` events per tenant, placed as capture places them, and the tenants
    recorded as seen; returns the topic."""
    topic = kafka.cdc_topic(entity)
    assert create_topic(kafka, topic, PARTS)
    seen = kafka.control_topic("tenants")
    ensure_topics(kafka, [seen], 1, {"cleanup.policy": "compact"})
    prod = producer(kafka)
    for tenant, count in rows.items():
        for entity_id in range(count):
            part = partition_for(tenant, entity_id, PARTS, kafka.spread_of(tenant))
            prod.produce(topic, key=event_key(tenant, entity_id), value=b"x", partition=part)
        prod.produce(seen, key=tenant.encode(), value=json.dumps({"tenant_id": tenant}).encode())
    assert prod.flush(30) == 0
    return topic


def check_report(cli: Cli, **env: str) -> dict[str, object]:
    env = {"SLUICEWAY_KAFKA_SKEW_MIN_EVENTS": str(MIN_RECORDS), **env}
    return dict(json.loads(Cli({**cli.env, **env})("check", "--json", check=False).stdout))


def findings(report: dict[str, object], name: str) -> list[dict[str, object]]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return [c for c in checks if c["name"] == name]


def test_a_partition_holding_most_of_a_topic_is_named(kafka: KafkaSettings, cli: Cli) -> None:
    large, *small = tenants_based_at(2, 3)
    others = tenants_based_at(0, 2) + tenants_based_at(1, 2)
    topic = capture_like(kafka, "issue", {large: 400} | dict.fromkeys(small + others, 20))
    capture_like(kafka, "user", dict.fromkeys([large, *small, *others], 100))  # even
    # the share judged is the one Kafka holds: partition 2's records of the topic's
    records = {p: high - low for p, (low, high) in watermarks(kafka, topic, range(PARTS)).items()}
    assert records == {0: 40, 1: 40, 2: 440}
    report = check_report(cli)
    (finding,) = findings(report, "kafka partitions")  # the even topic gives none
    assert finding["ok"] is True  # a warning, not a failure: the run can still go
    placed = ", ".join(sorted([large, *small]))
    assert finding["detail"] == (
        f"warning: topic {topic}: partition 2 holds 85% of its 520 records (440; an even "
        "share is 33%), above kafka.skew_share=0.5; 3 tenant(s) capture has seen are placed "
        f"there ({placed}): find the large ones and give them a wider kafka.tenant_spread in "
        "a new kafka.topic_prefix (docs/topic-layout.md)"
    )
    problems = report.get("problems", [])
    assert isinstance(problems, list) and not any("kafka partitions" in p for p in problems)


def test_evenly_placed_tenants_give_no_warning(kafka: KafkaSettings, cli: Cli) -> None:
    tenants = tenants_based_at(0, 2) + tenants_based_at(1, 2) + tenants_based_at(2, 2)
    capture_like(kafka, "issue", dict.fromkeys(tenants, 100))
    assert findings(check_report(cli), "kafka partitions") == []


def test_a_spread_large_tenant_gives_no_warning(kafka: KafkaSettings, cli: Cli) -> None:
    # the layout the warning asks for: the large tenant spread over every partition
    large, small = tenants_based_at(2, 1)[0], tenants_based_at(0, 3)
    spread = kafka.model_copy(update={"tenant_spread": {large: PARTS}})
    capture_like(spread, "issue", {large: 600} | dict.fromkeys(small, 20))
    setting = json.dumps(spread.tenant_spread)
    assert (
        findings(check_report(cli, SLUICEWAY_KAFKA_TENANT_SPREAD=setting), "kafka partitions") == []
    )


def test_too_few_records_are_not_judged(kafka: KafkaSettings, cli: Cli) -> None:
    capture_like(kafka, "issue", {tenants_based_at(2, 1)[0]: MIN_RECORDS - 1})
    assert findings(check_report(cli), "kafka partitions") == []


def test_topics_of_another_partition_count_fail(kafka: KafkaSettings, cli: Cli) -> None:
    assert create_topic(kafka, kafka.cdc_topic("issue"), PARTS * 2)
    report = check_report(cli)
    (finding,) = findings(report, "kafka topics")
    assert finding["ok"] is False
    assert str(finding["detail"]).startswith(
        f"kafka.partitions={PARTS} but {kafka.cdc_topic('issue')} has {PARTS * 2} partitions"
    )
