"""The tenant offset index capture keeps lists exactly each tenant's offsets.

Capture snapshots five tenants and streams churn, is SIGKILLed mid-churn and restarted;
each time, once it has caught up, the index must cover every change-topic partition up to
its end and list, for each tenant, exactly the offsets whose key is that tenant's, as read
back from the change topics themselves.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pytest

from sluiceway.common.kafka_io import watermarks
from sluiceway.common.settings import KafkaSettings, PostgresSettings
from sluiceway.common.tenant_index_io import load_coverage
from tests.catalogs import ENTITIES
from tests.conftest import Cli
from tests.integration.capture_harness import (
    CaptureProcess,
    change_topic_ends,
    read_change_topics,
    settings_for_capture,
)
from tests.integration.test_capture import churn, finish, snapshot_done, wait_caught_up
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TENANTS = [f"tenant-{n:03d}" for n in range(1, 6)]


def covered_to_the_end(kafka: KafkaSettings) -> bool:
    topics = [kafka.cdc_topic(e) for e in ENTITIES]
    coverage = load_coverage(kafka, topics, range(kafka.partitions), TENANTS[:1])
    for topic in topics:
        for p, (low, high) in watermarks(kafka, topic, range(kafka.partitions)).items():
            if high > low and coverage[(topic, p)].covered_count(low, high) < high - low:
                return False
    return True


def check_exact(kafka: KafkaSettings) -> None:
    truth: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for record in read_change_topics(kafka):
        tenant = record.key.rpartition(b"/")[0].decode()
        truth[(tenant, record.topic, record.partition)].append(record.offset)
    assert {t for t, _topic, _p in truth} == set(TENANTS)
    topics = [kafka.cdc_topic(e) for e in ENTITIES]
    for tenant in TENANTS:
        found = load_coverage(kafka, topics, range(kafka.partitions), [tenant])
        for (topic, p), coverage in found.items():
            listed = coverage.offsets.tolist()
            assert listed == sorted(truth.get((tenant, topic, p), [])), (tenant, topic, p)
            # merged ranges, ascending and disjoint
            assert all(a[1] < b[0] for a, b in pairwise(coverage.ranges))


def test_the_index_lists_each_tenants_offsets_exactly_across_a_capture_kill(
    cli: Cli, kafka: KafkaSettings, source_db: PostgresSettings, tmp_path: Path, unique: str
) -> None:
    cli("source", "seed", "--tenants", "5", "--issues-per-tenant", "60", "--seed", "4")
    slot = f"sw_{unique}"
    settings = settings_for_capture(cli.env, slot)
    capture = CaptureProcess(settings, tmp_path / "capture.log")
    capture.start()
    try:
        wait_for(lambda: snapshot_done(kafka, slot), 120, "the initial snapshot")
        before = sum(change_topic_ends(kafka).values())
        writer = churn(cli, tmp_path / "ledger.jsonl", rate=300, seconds=6, seed=2)
        wait_for(
            lambda: sum(change_topic_ends(kafka).values()) > before + 300, 60,
            "churn on the change topics",
        )  # fmt: skip
        capture.kill()  # mid-churn: blocks of open segments are lost, the rest stays
        capture = CaptureProcess(settings, tmp_path / "capture-2.log")
        capture.start()
        assert finish(writer, timeout=120)["changes"] > 500
        wait_caught_up(source_db, slot, capture, timeout=120)
        wait_for(lambda: covered_to_the_end(kafka), 60, "the index to reach every end")
    finally:
        capture.stop()
    check_exact(kafka)
