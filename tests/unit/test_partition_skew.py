"""The skew rule and per-tenant spread settings (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluiceway.checks import _topic_settings
from sluiceway.common.partitioning import tenant_partitions
from sluiceway.common.settings import KafkaSettings, to_env
from sluiceway.kafka_check import Skew, skew_warning, tenants_placed, topic_skew


def test_share_above_the_threshold_names_the_topic_and_partition() -> None:
    skew = topic_skew("sw.cdc.issue", {0: 10, 1: 10, 2: 80}, 0.5, 50)
    assert skew == Skew("sw.cdc.issue", 2, 80, 100, 3)
    line = skew_warning(skew, 0.5, ["acme", "globex"])
    assert line.startswith(
        "topic sw.cdc.issue: partition 2 holds 80% of its 100 records (80; an even share is "
        "33%), above kafka.skew_share=0.5; 2 tenant(s) capture has seen are placed there "
        "(acme, globex): "
    )
    assert line.endswith("kafka.tenant_spread in a new kafka.topic_prefix (docs/topic-layout.md)")


def test_a_tie_names_the_lowest_partition() -> None:
    skew = topic_skew("t", {0: 0, 1: 45, 2: 45}, 0.4, 10)
    assert skew is not None and skew.partition == 1


@pytest.mark.parametrize(
    ("records", "share"),
    [
        ({0: 50, 1: 50}, 0.5),  # exactly at the threshold: not above it
        ({0: 10, 1: 10, 2: 40}, 0.67),
        ({0: 100}, 0.5),  # one partition cannot be skewed
        ({0: 1, 1: 0, 2: 45}, 0.5),  # 46 records, below the minimum of 50
        ({}, 0.5),
    ],
)
def test_no_skew(records: dict[int, int], share: float) -> None:
    assert topic_skew("t", records, share, 50) is None


def test_many_placed_tenants_are_counted_and_a_few_named() -> None:
    skew = Skew("t", 0, 90, 100, 3)
    line = skew_warning(skew, 0.5, [f"t{i}" for i in range(8)])
    assert "8 tenant(s) capture has seen are placed there (t0, t1, t2, t3, t4, ...)" in line
    assert "no tenant capture has seen is placed there" in skew_warning(skew, 0.5, [])


def test_the_tenants_placed_are_those_whose_partitions_include_the_skewed_one() -> None:
    kafka = KafkaSettings(partitions=6, tenant_spread={"wide": 6})
    tenants = [f"tenant-{i:03d}" for i in range(40)] + ["wide"]
    for part in range(6):
        placed = tenants_placed(Skew("t", part, 1, 1, 6), tenants, kafka)
        expected = [
            t for t in sorted(tenants) if part in tenant_partitions(t, 6, kafka.spread_of(t))
        ]
        assert placed == expected and "wide" in placed  # spread over all six
    # every spread-1 tenant is placed in exactly one partition
    counts = [len(tenants_placed(Skew("t", p, 1, 1, 6), tenants, kafka)) for p in range(6)]
    assert sum(counts) == 40 + 6


def test_tenant_spread_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_KAFKA_TENANT_SPREAD", '{"big": 4}')
    kafka = KafkaSettings(partitions=6)
    assert (kafka.spread_of("big"), kafka.spread_of("small")) == (4, 1)


def test_tenant_spread_must_be_positive() -> None:
    with pytest.raises(ValidationError, match=r"tenant .big. has spread 0; expected 1 or more"):
        KafkaSettings(tenant_spread={"big": 0})


def test_a_tenant_spread_wider_than_the_partitions_fails_check() -> None:
    finding = _topic_settings(KafkaSettings(partitions=3, tenant_spread={"big": 4}), {})
    assert not finding.ok
    assert finding.detail == "kafka.tenant_spread['big']=4 exceeds kafka.partitions=3"


def test_change_topics_with_another_partition_count_fail_check() -> None:
    # capture would place tenants by 3, runs by 6: they would read other partitions
    kafka = KafkaSettings(partitions=3, topic_prefix="sw.")
    counts = {"sw.cdc.issue": 6, "sw.cdc.user": 3, "sw.cdc.comment": 2, "sw.run.x": 1}
    finding = _topic_settings(kafka, counts)
    assert not finding.ok
    assert finding.detail.startswith(
        "kafka.partitions=3 but sw.cdc.comment has 2, sw.cdc.issue has 6 partitions: "
    )
    assert "new kafka.topic_prefix (docs/topic-layout.md)" in finding.fix


def test_change_topics_matching_the_setting_pass_check() -> None:
    kafka = KafkaSettings(partitions=3, topic_prefix="sw.")
    finding = _topic_settings(kafka, {"sw.cdc.issue": 3, "sw.run.x": 1, "other": 7})
    assert finding.ok and finding.detail == "prefix 'sw.': 1 change topics exist"


def test_a_tenant_spread_reaches_a_child_process_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    # a run's workers rebuild their settings from to_env; a dict must survive as JSON
    for name, value in to_env(KafkaSettings(tenant_spread={"big": 4, "x'y": 2})).items():
        monkeypatch.setenv(name, value)
    assert KafkaSettings().tenant_spread == {"big": 4, "x'y": 2}
