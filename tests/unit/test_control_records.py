"""Control records decode leniently, and a feed interval has a floor (no stack)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from sluiceway.api.app import create_app
from sluiceway.api.config_store import MemoryStore
from sluiceway.api.datapipeline import job_status
from sluiceway.api.dp_jobs import Job, jobs
from sluiceway.api.scheduler import Scheduler
from sluiceway.api.schedules import Schedule
from sluiceway.common import control_topics as control
from sluiceway.common.control_topics import ControlRecordError
from sluiceway.common.runs import RunRecord
from sluiceway.common.schema_versions import latest_version
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.control.registry import RunState
from tests.unit.test_api_http import TOKEN, fake_services

RUN = RunRecord(
    etl_id="20261121T235959Z-4f2a", type="full", tenants=("t1",), entities=("issue",),
    destination="/srv/lake", run_topic="sw.run.x", run_partitions=1,
    start={"sw.cdc.issue": {0: 0}}, cut={"sw.cdc.issue": {0: 7}},
)  # fmt: skip


def test_a_run_record_of_a_newer_version_keeps_its_unknown_fields() -> None:
    newer = json.loads(RUN.to_json()) | {"version": 2, "priority": {"level": "high"}}
    decoded = RunRecord.from_json(json.dumps(newer).encode())
    assert decoded == RUN and decoded.cut == {"sw.cdc.issue": {0: 7}}
    assert json.loads(decoded.to_json()) == newer


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"\x00\xff{", "not JSON"),
        (b"[1, 2]", "a JSON list"),
        (b"{}", "etl_id: Field required"),
        (json.dumps(json.loads(RUN.to_json()) | {"cut": "x"}).encode(), "cut:"),
        (b"[" * 20_000 + b"]" * 20_000, "not JSON"),
    ],
)
def test_an_unreadable_run_record_is_one_line_error(value: bytes, problem: str) -> None:
    with pytest.raises(ControlRecordError, match=problem) as caught:
        RunRecord.from_json(value)
    assert "\n" not in str(caught.value)


def test_unreadable_records_are_skipped_and_counted() -> None:
    before = control.UNREADABLE.labels(topic="runs")._value.get()
    raw = {b"a": RUN.to_json(), b"b": b"garbage", b"\xff": RUN.to_json()}
    assert list(control.decode_each("runs", raw, RunRecord.from_json)) == ["a"]
    assert control.UNREADABLE.labels(topic="runs")._value.get() == before + 2


def schedule(**changes: object) -> dict[str, object]:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    found = Schedule("feed", None, "delta", 3600, now, now).to_json()
    return found | changes


def test_the_scheduler_skips_an_unreadable_schedule_and_keeps_unknown_fields() -> None:
    store = MemoryStore(
        {"ok": schedule(name="ok", owner="v2"), "naive": schedule(anchor="2026-01-01T00:00:00"),
         "list": [1], "missing": {"name": "missing"}}
    )  # fmt: skip
    scheduler = Scheduler(KafkaSettings(port=1), S3Settings(port=1), store, MemoryStore())
    assert [s.name for s in scheduler.all()] == ["ok"]
    stored = scheduler.all()[0]
    scheduler.put(stored)
    assert store.load_all()["ok"]["owner"] == "v2"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(fake_services())) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client


def test_a_feed_interval_below_the_minimum_is_refused_in_one_line(client: TestClient) -> None:
    # under /tmp: the allowed root of the fake services
    spec = {"destination": "/tmp/sw-feed", "type": "continuous", "interval": 1}
    spec["tenants"] = ["t1"]
    response = client.post("/runs", json=spec)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["problems"][0]["field"] == "interval"
    assert "1 s is below the minimum of 60 s (SLUICEWAY_FEED_MIN_INTERVAL_S)" in body["error"]
    assert "\n" not in body["error"]


def test_the_minimum_interval_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_FEED_MIN_INTERVAL_S", "600")
    every_minute = {"tenants": ["t1"], "destination": "/tmp/sw-feed", "type": "continuous"}
    with TestClient(create_app(fake_services())) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        by_interval = client.post("/runs", json=every_minute | {"interval": 300})
        by_cron = client.post("/runs", json=every_minute | {"cron": "*/5 * * * *"})
    assert by_interval.status_code == 422, by_interval.text
    assert "300 s is below the minimum of 600 s" in by_interval.json()["error"]
    assert by_cron.status_code == 422, by_cron.text
    assert "300 s is below the minimum of 600 s" in by_cron.json()["error"]


def test_a_data_pipeline_job_reports_its_runs_unreadable_manifest_and_bad_jobs_are_skipped() -> (
    None
):
    job = Job(job_id=1, etl_id=RUN.etl_id, path="/srv/dp", export_from="2026-01-01T00:00:00Z",
              forced=False, schema_version=latest_version())  # fmt: skip
    state = RunState(RUN, "failed", "manifest unreadable", None, manifest_error="not JSON: x")
    status = job_status(job, state)
    assert status.status == "FAILED"
    assert [e.key for e in status.errors] == ["export.failed", "export.manifest.unreadable"]
    config = {"job:a": {"job_id": "not", "etl_id": None}, "job:b": [1], "job:1": asdict(job)}
    before = _unreadable("config")
    assert jobs(config) == [job]
    assert _unreadable("config") == before + 2


def _unreadable(topic: str) -> float:
    return control.UNREADABLE.labels(topic=topic)._value.get()
