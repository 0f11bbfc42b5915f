"""Run status, one active run per destination, and cancelling a run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from sluiceway.common.kafka_io import consumer
from sluiceway.common.settings import KafkaSettings
from tests.conftest import Cli

pytestmark = pytest.mark.integration


def test_status_conflict_cancel_and_release(cli: Cli, tmp_path: Path) -> None:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "10")
    cli("capture", "--snapshot-only")
    lake = str(tmp_path / "lake")
    # No workers are launched: the run stands for one whose workers died.
    orphan = cli.json("export", "start", "--tenant", "tenant-001", "--dest", lake, "--no-launch")
    etl_id = orphan["etl_id"]
    assert orphan["workers"] == [
        f"sluiceway process --run {etl_id}",
        f"sluiceway sink --run {etl_id}",
    ]
    assert cli.json("export", "status", etl_id)["status"] == "running"
    busy = cli("export", "start", "--tenant", "tenant-001", "--dest", lake, check=False)
    assert busy.returncode == 3
    assert f"is busy with run {etl_id}" in busy.stderr
    assert cli.json("export", "cancel", etl_id)["status"] == "cancelled"
    assert cli.json("export", "status", etl_id)["status"] == "cancelled"
    again = cli.json("export", "start", "--tenant", "tenant-001", "--dest", lake, "--wait")
    latest = cli.json("export", "status")
    assert latest["etl_id"] == again["etl_id"] and latest["status"] == "complete"
    assert latest["rows"] == again["rows"]
    listed = cli.json("export", "status", "--all")
    assert [r["status"] for r in listed if r["etl_id"] in (etl_id, again["etl_id"])] == [
        "cancelled", "complete",
    ]  # fmt: skip
    done = cli("export", "cancel", again["etl_id"], check=False)
    assert done.returncode == 3 and "already complete" in done.stderr


def notices(kafka: KafkaSettings, etl_id: str) -> list[dict[str, Any]]:
    reader = consumer(
        kafka, group=f"notices-{time.monotonic_ns()}", **{"enable.partition.eof": True}
    )
    reader.assign([TopicPartition(kafka.notifications_topic, 0, 0)])
    found, done, deadline = [], False, time.monotonic() + 30
    while not done and time.monotonic() < deadline:
        for msg in reader.consume(100, 0.5):
            err = msg.error()
            if err is not None:
                done = err.code() == KafkaError._PARTITION_EOF
            elif msg.key() == etl_id.encode():
                found.append(json.loads(msg.value() or b"{}"))
    reader.close()
    return found


def test_a_sink_restarted_after_completion_notifies_again(
    cli: Cli, kafka: KafkaSettings, tmp_path: Path
) -> None:
    cli("source", "seed", "--tenants", "1", "--issues-per-tenant", "5")
    cli("capture", "--snapshot-only")
    run = cli.json("export", "start", "--tenant", "tenant-001", "--dest", str(tmp_path), "--wait")
    [first] = notices(kafka, run["etl_id"])
    assert first["rows"] == run["rows"] and first["etl_id"] == run["etl_id"]
    cli("sink", "--run", run["etl_id"])  # as if it had died between manifest and notice
    assert notices(kafka, run["etl_id"]) == [first, first]
