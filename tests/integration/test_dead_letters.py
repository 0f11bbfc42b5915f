"""Bad events go to the dead-letter topic with the reason, are counted, and the run goes on."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from sluiceway.common.codec import Codec
from sluiceway.common.kafka_io import admin, consumer, ensure_topics, producer
from sluiceway.common.partitioning import partition_for
from sluiceway.common.settings import KafkaSettings
from tests.conftest import Cli

pytestmark = pytest.mark.integration
TENANT = "tenant-001"


def inject(kafka: KafkaSettings, entity: str, key: bytes, value: bytes) -> None:
    part = partition_for(TENANT, 0, kafka.partitions, kafka.spread)
    prod = producer(kafka)
    prod.produce(kafka.cdc_topic(entity), key=key, value=value, partition=part)
    assert prod.flush(30) == 0


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_dead_letters(kafka: KafkaSettings, expected: int) -> list[DeadLetter]:
    reader = consumer(kafka, group=f"dlq-{time.monotonic_ns()}")
    reader.assign([TopicPartition(kafka.dlq_topic("processor"), 0, 0)])
    found: list[DeadLetter] = []
    deadline = time.monotonic() + 30
    while len(found) < expected and time.monotonic() < deadline:
        for msg in reader.consume(100, 0.5):
            if not msg.error():
                headers: list[tuple[str, bytes]] = msg.headers() or []  # type: ignore[assignment]
                found.append(DeadLetter(msg.key(), msg.value(), dict(headers)))
    reader.close()
    return found


def dead_letters(
    kafka: KafkaSettings, expected: int
) -> list[tuple[bytes | None, dict[str, bytes]]]:
    return [(d.key, d.headers) for d in read_dead_letters(kafka, expected)]


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
    assert headers["sw-body"] == b"raw"  # nothing decodes: kept as it came
    assert seeded["rows"]["issue"] == 2 * issues


EMAIL, NAME, ACCOUNT = "ada.secret@example.com", "Ada Secretname", "acct-private-42"
SECRET = "dead-letter-test-secret"


def user_event(entity_id: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    row = {
        "id": entity_id, "account_id": ACCOUNT, "display_name": NAME, "email_address": EMAIL,
        "active": True, "time_zone": "Europe/Paris", "locale": "fr_FR", "created": now,
        "updated": now,
    }  # fmt: skip
    return {
        "tenant_id": TENANT, "entity": "user", "entity_id": entity_id, "op": "u",
        "position": 1, "source_ts": now, "snapshot": False, "after": row,
    }  # fmt: skip


def retention_ms(kafka: KafkaSettings, topic: str) -> int:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = admin(kafka)  # must outlive its future
    [future] = client.describe_configs([resource]).values()
    return int(future.result(30)["retention.ms"].value)


def test_dead_letters_are_redacted_like_the_run_and_expire_within_days(
    cli: Cli, kafka: KafkaSettings, tmp_path: Path
) -> None:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "5")
    cli("capture", "--snapshot-only")
    # as a version without the retention setting created it: the broker's default retention
    ensure_topics(kafka, [kafka.dlq_topic("processor")], 1)
    # decodable, but its key names user 999002 and its body user 999003: dead-lettered
    inject(kafka, "user", f"{TENANT}/999002".encode(), Codec().encode(user_event(999003)))
    spec = {
        "tenants": [TENANT], "entities": ["user"], "destination": str(tmp_path / "lake"),
        "fields": {"user": ["email_address", "display_name", "active", "updated"]},
        "pii": {"user.email_address": "hash", "user.display_name": "drop"},
        "pii_secret": SECRET,
    }  # fmt: skip
    spec_file = tmp_path / "run.json"
    spec_file.write_text(json.dumps(spec))
    result = cli.json("export", "start", "--spec", str(spec_file), "--wait")
    assert cli.json("export", "status", result["etl_id"])["dead_letters"] == 1
    [letter] = read_dead_letters(kafka, 1)
    assert letter.key == f"{TENANT}/999002".encode()
    assert b"does not match event body" in letter.headers["sw-error"]
    raw = letter.value or b""
    for value in (EMAIL, NAME, ACCOUNT):  # hashed, dropped, not among the run's fields
        assert value.encode() not in raw
    assert letter.headers["sw-body"] == b"redacted-json"
    row = json.loads(raw)["after"]
    digest = hmac.new(SECRET.encode(), EMAIL.encode(), hashlib.sha256).hexdigest()
    assert row == {
        "id": 999003, "email_address": digest, "active": True, "updated": row["updated"]
    }  # fmt: skip
    for stage in ("processor", "sink"):
        assert retention_ms(kafka, kafka.dlq_topic(stage)) == 3 * 24 * 3600 * 1000
