"""Bad control records on the real Kafka: a garbage record and a record of a newer version on
the runs and schedules topics, and a corrupt manifest at one destination, must not stop a
pool, the API, the scheduler or `export status`; only the bad item is reported."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sluiceway.api.app import Services, create_app
from sluiceway.common.control_topics import CONTROL_TOPIC_CONFIG
from sluiceway.common.kafka_io import ensure_topics, producer, read_control
from sluiceway.common.runs import RunRecord, new_etl_id
from sluiceway.common.settings import KafkaSettings
from tests.conftest import Cli, Stack, settings_env
from tests.integration.records import publish_run
from tests.manifests import complete_manifest
from tests.net import free_port, get
from tests.polling import wait_for

pytestmark = pytest.mark.integration
TOKEN = "control-records-token-5b1e0c9d7a3f"
GARBAGE = b"\x00\xff{not json"


def write_raw(kafka: KafkaSettings, name: str, key: str, value: bytes) -> None:
    topic = kafka.control_topic(name)
    ensure_topics(kafka, [topic], 1, CONTROL_TOPIC_CONFIG)
    prod = producer(kafka, **{"linger.ms": 0})
    prod.produce(topic, key=key.encode(), value=value)
    assert prod.flush(30) == 0


def a_run(kafka: KafkaSettings, lake: Path, minutes: int) -> RunRecord:
    etl_id = new_etl_id(datetime.now(UTC) + timedelta(minutes=minutes))  # the order asked for
    return RunRecord(
        etl_id=etl_id, type="full", tenants=("tenant-001",), entities=("issue",),
        destination=str(lake), run_topic=kafka.run_topic(etl_id), run_partitions=1,
        start={kafka.cdc_topic("issue"): {0: 0}}, cut={kafka.cdc_topic("issue"): {0: 0}},
    )  # fmt: skip


def write_manifest(run: RunRecord, content: bytes | None = None) -> None:
    """A manifest as a sink leaves it (``content`` None) or corrupt bytes in its place."""
    manifest = complete_manifest({
        "etl_id": run.etl_id, "type": "full", "status": "complete",
        "completed_at": datetime.now(UTC).isoformat(), "tables": {"issue": {"rows": 0}},
        "totals": {"files": 0, "rows": 0, "bytes": 0}, "dead_letters": 0,
    })  # fmt: skip
    path = Path(run.destination) / "_runs" / f"{run.etl_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if content is not None else json.dumps(manifest).encode())


@pytest.fixture
def bad_records(kafka: KafkaSettings, tmp_path: Path) -> dict[str, Any]:
    """Runs: a good complete one, one of a newer version (unknown fields), one whose manifest is
    corrupt, and garbage. Schedules: garbage, and a due one of a newer version."""
    good, newer, corrupt = (
        a_run(kafka, tmp_path / n, i) for i, n in enumerate(("good", "newer", "corrupt"))
    )
    for run in (good, newer, corrupt):
        publish_run(kafka, run)
        write_manifest(run, b'{"etl_id": "truncated' if run is corrupt else None)
    future = json.loads(newer.to_json()) | {"version": 2, "priority": {"level": "high"}}
    write_raw(kafka, "runs", newer.etl_id, json.dumps(future).encode())
    write_raw(kafka, "runs", "20260101T000000Z-dead", GARBAGE)
    write_raw(kafka, "runs", "29991231T235959Z-last", b'{"etl_id": "29991231T235959Z-last"}')
    write_raw(kafka, "schedules", "broken", GARBAGE)
    now = datetime.now(UTC)
    due = {
        "name": "future-feed", "mode": "full", "interval_s": 3600, "needs_secret": False,
        "spec": {"tenants": ["tenant-unknown"], "destination": str(tmp_path / "feed")},
        "anchor": now.isoformat(), "next_due": (now - timedelta(seconds=1)).isoformat(),
        "owner": "a newer server", "version": 2,
    }  # fmt: skip
    write_raw(kafka, "schedules", "future-feed", json.dumps(due).encode())
    return {"good": good, "newer": newer, "corrupt": corrupt}


@pytest.fixture
def api(
    kafka: KafkaSettings, local_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    roots = str(tmp_path_factory.getbasetemp())  # the tests' lakes are temporary directories
    app = create_app(Services.build(kafka, local_stack.s3, SecretStr(TOKEN), roots=roots))
    with TestClient(app) as client:  # the context runs the scheduler
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client


def test_api_and_scheduler_skip_bad_records_and_report_a_bad_manifest_on_its_run(
    bad_records: dict[str, Any], api: TestClient, kafka: KafkaSettings
) -> None:
    good, newer, corrupt = (bad_records[k] for k in ("good", "newer", "corrupt"))
    listed = api.get("/runs")
    assert listed.status_code == 200, listed.text
    runs = {r["etl_id"]: r for r in listed.json()}
    assert set(runs) == {good.etl_id, newer.etl_id, corrupt.etl_id}
    assert runs[good.etl_id]["status"] == runs[newer.etl_id]["status"] == "complete"
    assert runs[good.etl_id]["manifest_error"] is None
    assert runs[corrupt.etl_id]["status"] == "failed"
    assert "_runs" in runs[corrupt.etl_id]["manifest_error"]
    one = api.get(f"/runs/{corrupt.etl_id}")
    assert one.status_code == 200 and one.json()["manifest_error"], one.text
    assert api.get(f"/runs/{good.etl_id}").json()["status"] == "complete"

    # the Data pipeline endpoints read the same records: no job yet, and no 500 either
    export = api.get("/rest/datapipeline/latest/export")
    assert export.status_code == 200, export.text
    assert export.json()["status"] == "NOT_STARTED"

    # the scheduler still fires the readable schedule and keeps the fields it does not know
    def fired() -> dict[str, Any] | None:
        found = {s["name"]: s for s in api.get("/schedules").json()}
        return found["future-feed"] if found["future-feed"]["last_error"] else None

    feed = wait_for(fired, 60, "the scheduler to fire the due schedule")
    assert "tenant-unknown" in feed["last_error"]
    stored = json.loads(read_control(kafka, "schedules")[b"future-feed"])
    assert stored["owner"] == "a newer server" and stored["version"] == 2
    scraped = api.get("/metrics").text
    assert 'sluiceway_control_records_unreadable_total{topic="runs"}' in scraped
    assert 'sluiceway_control_records_unreadable_total{topic="schedules"}' in scraped


def test_pool_and_cli_keep_working(
    bad_records: dict[str, Any], kafka: KafkaSettings, local_stack: Stack, tmp_path: Path
) -> None:
    cli = Cli(settings_env(kafka, local_stack.pg))
    listed = cli.json("export", "status", "--all")
    assert {r["etl_id"]: r["status"] for r in listed} == {
        bad_records["good"].etl_id: "complete",
        bad_records["newer"].etl_id: "complete",
        bad_records["corrupt"].etl_id: "failed",
    }
    # the latest record is unreadable: the latest readable run is the one shown
    assert cli.json("export", "status")["etl_id"] == bad_records["corrupt"].etl_id
    port, log = free_port(), tmp_path / "pool.log"
    pool = subprocess.Popen(
        [sys.executable, "-m", "sluiceway.cli", "sink", "--pool", "--metrics-port", str(port)],
        env={**cli.env, "SLUICEWAY_POOL_INTERVAL_S": "0.5"}, stdout=log.open("ab"),
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: get(port, "/readyz")[0] == 200 or pool.poll() is not None, 60, "ready")
        assert pool.poll() is None, log.read_text()[-2000:]
        assert "0 runs in progress" in get(port, "/readyz")[1]
        _, scraped = get(port, "/metrics")
        assert 'sluiceway_control_records_unreadable_total{topic="runs"}' in scraped
    finally:
        pool.send_signal(signal.SIGTERM)
        code = pool.wait(60)
    assert code == 0, log.read_text()[-2000:]
