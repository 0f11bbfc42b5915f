"""The Data pipeline endpoints without a stack: config bodies, refusals, schedules, schemas."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sluiceway.api.app import Services, create_app
from sluiceway.api.config_store import MemoryStore
from sluiceway.api.dp_jobs import default_export_path, jobs, new_job
from sluiceway.api.scheduler import Scheduler
from sluiceway.api.schedules import cron_next
from sluiceway.common.schema_versions import columns_of, latest_version, versions
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.spec_fields import entity_columns
from tests.catalogs import ENTITIES

TOKEN = "unit-test-token-5b9e"
PREFIXES = ("/rest/datapipeline/1.0", "/rest/datapipeline/latest")
KNOWN_KEYS = {"HR", "TEST", "OPS"}


def services(root: Path) -> Services:
    # Port 1: anything that reaches for Kafka fails instead of touching a real broker.
    kafka, s3 = KafkaSettings(port=1, topic_prefix="unit.sw."), S3Settings(port=1)
    config = MemoryStore()
    scheduler = Scheduler(kafka, s3, MemoryStore(), config, probe=lambda: None)
    return Services(kafka, s3, SecretStr(TOKEN), config, scheduler, roots=(str(root),))


@pytest.fixture(params=PREFIXES)
def dp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    keys = mock.patch("sluiceway.api.dp_config.known_project_keys", lambda _: KNOWN_KEYS)
    with keys, TestClient(create_app(services(tmp_path))) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        client.headers["X-Atlassian-Token"] = "no-check"
        yield client, request.param


def errors_body(response: Any, status: int, key: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errors"][0]["key"] == key and body["errors"][0]["message"] == body["error"]
    assert "\n" not in body["error"]
    return str(body["error"])


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "2026-01-01T00:00:00"])
def test_a_bad_from_date_is_422_with_the_error_shape(
    dp: tuple[TestClient, str], value: str
) -> None:
    client, prefix = dp
    error = errors_body(
        client.post(f"{prefix}/export", params={"fromDate": value}), 422, "export.fromDate.invalid"
    )
    assert repr(value) in error and "ISO 8601" in error


def test_an_unknown_schema_version_is_422(dp: tuple[TestClient, str]) -> None:
    client, prefix = dp
    response = client.post(f"{prefix}/export", params={"schemaVersion": 99})
    assert "known versions" in errors_body(response, 422, "export.schema.version.unknown")


def test_before_any_export_the_status_is_not_started(dp: tuple[TestClient, str]) -> None:
    client, prefix = dp
    status = client.get(f"{prefix}/export").json()
    assert status["status"] == "NOT_STARTED" and status["jobId"] is None
    assert client.get(f"{prefix}/history").json() == []
    assert client.get(f"{prefix}/ping").status_code == 200
    errors_body(client.delete(f"{prefix}/export"), 404, "export.not.found")


def test_the_documented_optout_calls(dp: tuple[TestClient, str]) -> None:
    client, prefix = dp
    url = f"{prefix}/config/optout"
    assert client.get(url).json() == {"entities": [], "limit": 1000}
    added = client.post(url, json={"type": "SPACE", "keys": ["HR", "TEST"]})
    assert added.status_code == 200, added.text
    assert added.json()["entities"] == [{"type": "SPACE", "identifiers": ["HR", "TEST"]}]
    missing = client.post(url, json={"type": "PROJECT", "keys": ["OPS", "NOPE"]})
    assert "NOPE" in errors_body(missing, 404, "optout.key.not.found")
    skipped = client.post(url, params={"continueIfNotFound": "true"},
                          json={"type": "PROJECT", "keys": ["OPS", "NOPE"]})  # fmt: skip
    assert {"type": "PROJECT", "identifiers": ["OPS"]} in skipped.json()["entities"]
    removed = client.request("DELETE", url, json={"type": "SPACE", "keys": ["HR"]})
    assert {"type": "SPACE", "identifiers": ["TEST"]} in removed.json()["entities"]
    again = client.request("DELETE", url, json={"type": "SPACE", "keys": ["HR"]})
    errors_body(again, 404, "optout.key.not.found")
    bad = client.post(url, json={"type": "GALAXY", "keys": ["HR"]})
    assert bad.status_code == 422 and "GALAXY" in bad.json()["error"]


def test_the_optout_limit_is_a_setting(
    dp: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prefix = dp
    monkeypatch.setenv("SLUICEWAY_DATAPIPELINE_OPTOUT_LIMIT", "2")
    url = f"{prefix}/config/optout"
    assert client.post(url, json={"type": "PROJECT", "keys": ["HR", "TEST"]}).status_code == 200
    over = client.post(url, json={"type": "PROJECT", "keys": ["OPS"]})
    assert "at most 2" in errors_body(over, 422, "optout.limit.exceeded")
    assert client.get(url).json()["limit"] == 2


def test_the_export_path_defaults_and_delete_restores_it(
    dp: tuple[TestClient, str], tmp_path: Path
) -> None:
    client, prefix = dp
    url = f"{prefix}/config/export-path"
    assert client.get(url).json() == {"path": default_export_path()}
    for bad in ("relative/lake", "ftp://host/x", "s3://", ""):
        assert client.put(url, json={"path": bad}).status_code == 422, bad
    errors_body(client.put(url, json={"path": "/etc/elsewhere"}), 403, "export.path.not.allowed")
    good = str(tmp_path / "exports")
    assert client.put(url, json={"path": good + "/"}).json() == {"path": good}
    assert client.get(url).json() == {"path": good}
    assert client.delete(url).json() == {"path": default_export_path()}
    assert client.get(url).json() == {"path": default_export_path()}


def test_schema_versions_are_frozen_column_lists(dp: tuple[TestClient, str]) -> None:
    client, prefix = dp
    listed = client.get(f"{prefix}/config/schema").json()
    assert listed["current"] == latest_version()
    assert [(v["version"], v["status"]) for v in listed["versions"]] == [
        (1, "DEPRECATED"), (2, "ACTIVE"),
    ]  # fmt: skip
    latest = listed["versions"][-1]["entities"]
    assert latest == {e: [*entity_columns(e), "_tenant_id"] for e in ENTITIES}
    for entity in ENTITIES:
        old = columns_of(1, entity)
        assert "id" in old and set(old) <= set(entity_columns(entity))
    assert "story_points" not in columns_of(1, "issue")


def test_the_schedule_round_trip(
    dp: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    client, prefix = dp
    monkeypatch.setenv("SLUICEWAY_DATAPIPELINE_TIMEZONE", "Europe/Berlin")
    url = f"{prefix}/config/schedule"
    errors_body(client.get(url), 404, "schedule.not.found")
    body = {"fromDate": "2026-01-01", "repeatDays": ["MONDAY"], "startTime": "02:30"}
    # the default path is outside this server's roots: a schedule that could never run
    errors_body(client.put(url, json=body), 403, "export.path.not.allowed")
    moved = client.put(f"{prefix}/config/export-path", json={"path": str(tmp_path / "exports")})
    assert moved.status_code == 200, moved.text
    body = {"fromDate": "2026-01-01", "repeatDays": ["saturday", "MONDAY"], "startTime": "02:30"}
    for bad in ({**body, "repeatDays": []}, {**body, "repeatDays": ["FUNDAY"]},
                {**body, "startTime": "25:00"}, {**body, "schemaVersion": 7}):  # fmt: skip
        assert client.put(url, json=bad).status_code == 422, bad
    put = client.put(url, json=body)
    assert put.status_code == 200, put.text
    view = client.get(url).json()
    assert view["repeatDays"] == ["MONDAY", "SATURDAY"] and view["startTime"] == "02:30"
    assert view["timeZone"] == "Europe/Berlin" and view["schemaVersion"] == latest_version()
    assert view["fromDate"].startswith("2026-01-01T00:00:00") and view["lastJobId"] is None
    due = datetime.fromisoformat(view["nextRunTime"]).astimezone(UTC)
    local = due.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (2, 30) and local.strftime("%A") in ("Monday", "Saturday")
    assert client.delete(url).status_code == 204
    errors_body(client.delete(url), 404, "schedule.not.found")


def test_scheduled_times_follow_the_wall_clock_across_dst() -> None:
    cron = "30 2 * * MON"
    # Berlin leaves summer time on Sunday 2026-10-25: 02:30 is 00:30 UTC before, 01:30 after.
    before = cron_next(cron, "Europe/Berlin", datetime(2026, 10, 17, tzinfo=UTC))
    after = cron_next(cron, "Europe/Berlin", before)
    assert before == datetime(2026, 10, 19, 0, 30, tzinfo=UTC)
    assert after == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_job_numbers_count_per_export_path() -> None:
    store = MemoryStore({"export-path": "/a"})
    now = datetime(2026, 6, 1, tzinfo=UTC)
    for i, path in enumerate(["/a", "/a", "/b", "/a"]):
        store.put("export-path", path)
        job = new_job(store.load_all(), f"2026060{i}T000000Z-000{i}", None, False, None, "n", now)
        store.put(f"job:{job.etl_id}", job.__dict__)
    assert [(j.path, j.job_id) for j in jobs(store.load_all())] == [
        ("/a", 1), ("/a", 2), ("/b", 1), ("/a", 3),
    ]  # fmt: skip
    first = jobs(store.load_all())[0]
    assert first.root == "/a/1" and first.export_from.startswith("2025-06-01")
    assert first.schema_version == latest_version() and versions()[-1] == latest_version()


def test_a_due_schedule_starts_a_numbered_job(tmp_path: Path) -> None:
    built = services(tmp_path)
    app = create_app(built)  # hooks the schedule to the job starter
    started: list[tuple[Any, ...]] = []

    def start_job(*args: Any) -> tuple[Any, Any]:
        started.append(args[1:])
        return None, mock.Mock(etl_id="20261207T013000Z-abcd")

    with TestClient(app) as client, mock.patch("sluiceway.api.datapipeline.start_job", start_job):
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        url = f"{PREFIXES[1]}/config/export-path"
        client.put(url, json={"path": str(tmp_path / "exports")})
        body = {"fromDate": "2026-01-01", "repeatDays": ["MONDAY"], "startTime": "02:30",
                "schemaVersion": 1}  # fmt: skip
        assert client.put(f"{PREFIXES[1]}/config/schedule", json=body).status_code == 200
        due = built.scheduler.get("datapipeline")
        assert due is not None
        built.scheduler.tick(due.next_due)
    assert started == [(datetime(2026, 1, 1, tzinfo=UTC), False, 1)]
    after = built.scheduler.get("datapipeline")
    assert after is not None and after.last_etl_id == "20261207T013000Z-abcd"
    assert after.next_due > due.next_due and after.last_error is None


def _job() -> Any:
    from sluiceway.api.dp_jobs import Job

    return Job(job_id=3, etl_id="20261206T210554Z-3da1c48daf3d93ba", path="/x", forced=False,
               export_from="2000-01-01T00:00:00+00:00", schema_version=1)  # fmt: skip


def _cancel_racing(tmp_path: Path, after: str) -> dict[str, Any]:
    """DELETE /export on a running job whose run is ``after`` once the cancel is recorded
    (``registry.after_cancel``: complete when its manifest came first)."""
    from sluiceway.control.registry import RunState

    run = mock.Mock(etl_id=_job().etl_id, created_at="2026-12-06T21:05:54+00:00")
    manifest = mock.Mock(completed_at="2026-12-06T21:05:58+00:00", tables={"issue": 0},
                         dead_letters=0, totals=mock.Mock(rows=82))  # fmt: skip
    running = RunState(run, "running", None, None)
    read_back = RunState(run, after, None, manifest if after == "complete" else None)
    reg = "sluiceway.control.registry"
    with (
        mock.patch("sluiceway.api.datapipeline.jobs", lambda _config: [_job()]),
        # the run's state read by DELETE, then again once the cancel is recorded
        mock.patch(f"{reg}.states", side_effect=[[running], [read_back]]),
        mock.patch(f"{reg}.cancel", return_value=[]) as cancel,
        mock.patch("sluiceway.api.datapipeline._status_at", return_value=None),
        TestClient(create_app(services(tmp_path))) as client,
    ):
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = client.delete(f"{PREFIXES[0]}/export", params={"jobId": "3"})
    assert response.status_code == 200, response.text
    assert cancel.call_count == 1
    body: dict[str, Any] = response.json()
    return body


def test_a_cancel_that_loses_the_race_with_the_manifest_says_completed(tmp_path: Path) -> None:
    # the run wrote its manifest while the cancel was recorded: the manifest wins, and the
    # answer must not be CANCELLED, which the next GET would contradict
    body = _cancel_racing(tmp_path, "complete")
    assert body["status"] == "COMPLETED" and body["cancelledTime"] is None
    assert body["completedTime"] == "2026-12-06T21:05:58+00:00"


def test_a_cancel_that_wins_says_cancelled(tmp_path: Path) -> None:
    body = _cancel_racing(tmp_path, "cancelled")
    assert body["status"] == "CANCELLED" and body["cancelledTime"]


@pytest.mark.parametrize("written", [True, False])
def test_after_cancel_a_manifest_wins(written: bool) -> None:
    from sluiceway.control import registry

    run = mock.Mock(etl_id=_job().etl_id)
    manifest = mock.Mock() if written else None
    read_back = registry.RunState(run, "complete" if written else "cancelled", None, manifest)
    running = registry.RunState(run, "running", None, None)
    with mock.patch.object(registry, "states", return_value=[read_back]) as states:
        after = registry.after_cancel(KafkaSettings(port=1), S3Settings(port=1), running, "why")
    assert states.call_count == 1
    assert after.status == ("complete" if written else "cancelled")
    assert after.manifest is manifest
    assert after.reason == (None if written else "why")
