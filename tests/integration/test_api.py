"""The control API against the real stack: Data pipeline export flow, /runs, continuous feeds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sluiceway.api.app import Services, create_app
from sluiceway.settings import KafkaSettings, PostgresSettings
from tests.conftest import Cli, Stack
from tests.polling import wait_for

pytestmark = pytest.mark.integration
DP = "/rest/datapipeline/latest"
TOKEN = "integration-token-41c2"
TENANT = "tenant-001"


def client_for(kafka: KafkaSettings, local_stack: Stack, roots: str = "") -> TestClient:
    app = create_app(Services.build(kafka, local_stack.s3, SecretStr(TOKEN), roots=roots))
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return client


def roots(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tests' lakes are temporary directories: the API may write under their base."""
    return str(tmp_path_factory.getbasetemp())


@pytest.fixture
def api(
    kafka: KafkaSettings, local_stack: Stack, cli: Cli, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    cli("source", "seed", "--tenants", "2", "--issues-per-tenant", "15")
    cli("capture", "--snapshot-only")
    # the context runs the scheduler
    with client_for(kafka, local_stack, roots(tmp_path_factory)) as client:
        yield client
        _cancel_running(client)


def _cancel_running(client: TestClient) -> None:
    """Leave no workers behind: feeds are dropped first so nothing starts again."""
    for schedule in client.get("/schedules").json():
        client.delete(f"/schedules/{schedule['name']}")
    for run in client.get("/runs").json():
        if run["status"] == "running":
            client.delete(f"/runs/{run['etl_id']}")


def a_project_key(pg: PostgresSettings) -> str:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT key FROM projects WHERE tenant_id = %s ORDER BY id LIMIT 1", (TENANT,))
        row = cur.fetchone()
    assert row is not None
    return str(row[0])


def configure(api: TestClient, lake: Path, opt_out: list[str]) -> None:
    assert api.put(f"{DP}/config/tenants", json={"tenants": [TENANT]}).status_code == 200
    unknown = api.put(f"{DP}/config/tenants", json={"tenants": [TENANT, "tenant-999"]})
    assert unknown.status_code == 422
    assert unknown.json()["problems"][0]["field"] == "tenants[1]"
    assert api.put(f"{DP}/config/export-path", json={"path": str(lake)}).json() == {
        "path": str(lake)
    }
    assert api.put(f"{DP}/config/optout", json={"projectKeys": opt_out}).status_code == 200


def busy_then_cancelled(api: TestClient, lake: Path) -> str:
    """A run whose workers never start makes the destination deterministically busy."""
    spec = {"tenants": [TENANT], "destination": str(lake)}
    orphan = api.post("/runs", params={"launch": "false"}, json=spec)
    assert orphan.status_code == 202, orphan.text
    orphan_id: str = orphan.json()["etl_id"]
    busy = api.post(f"{DP}/export")
    assert busy.status_code == 409 and orphan_id in busy.json()["error"]
    assert api.get(f"{DP}/export").json()["status"] == "STARTED"
    cancelled = api.delete(f"{DP}/export")
    assert cancelled.status_code == 200
    assert cancelled.json()["jobId"] == orphan_id and cancelled.json()["status"] == "CANCELLED"
    assert api.delete(f"{DP}/export").status_code == 409
    assert api.get(f"/runs/{orphan_id}").json()["status"] == "cancelled"
    assert api.get(f"{DP}/export").json()["cancelledTime"] is not None
    return orphan_id


def export_completed(api: TestClient) -> dict[str, Any] | None:
    status: dict[str, Any] = api.get(f"{DP}/export").json()
    assert status["status"] in ("STARTED", "COMPLETED"), status
    return status if status["status"] == "COMPLETED" else None


def test_datapipeline_export_flow(
    api: TestClient, tmp_path: Path, source_db: PostgresSettings
) -> None:
    lake = tmp_path / "lake"
    assert api.get(f"{DP}/export").json()["status"] == "NOT_STARTED"
    key = a_project_key(source_db)
    configure(api, lake, [key])
    orphan_id = busy_then_cancelled(api, lake)

    started = api.post(f"{DP}/export", params={"fromDate": "2000-01-01T00:00:00Z"})
    assert started.status_code == 202, started.text
    job_id = started.json()["jobId"]
    assert started.json()["status"] == "STARTED"
    status = wait_for(lambda: export_completed(api), 180, "the export to complete")
    manifest = json.loads((lake / "_runs" / f"{job_id}.json").read_text())
    assert status["jobId"] == job_id and status["rootExportPath"] == str(lake)
    assert status["statistics"] == {
        "exportedEntities": len(manifest["tables"]),
        "writtenRows": manifest["totals"]["rows"],
    }
    assert status["statistics"]["writtenRows"] > 0
    assert status["optedOutEntities"] == [key]
    assert status["config"]["fromDate"].startswith("2000-01-01T00:00:00")
    assert status["completedTime"] and status["startTime"] and status["errors"] == []

    listed = api.get("/runs").json()
    assert [r["etl_id"] for r in listed[:2]] == [job_id, orphan_id]  # newest first
    assert listed[0]["status"] == "complete"
    assert api.get("/runs/20000101T000000Z-0000").status_code == 404
    assert api.delete(f"/runs/{job_id}").status_code == 409


def test_continuous_feed_runs_full_then_delta_and_survives_restart(
    api: TestClient, kafka: KafkaSettings, local_stack: Stack, tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SLUICEWAY_FEED_MIN_INTERVAL_S", "1")  # a feed every 2 s, to see two runs
    lake = tmp_path / "feed"
    spec = {"tenants": [TENANT], "destination": str(lake), "type": "continuous", "interval": 2}
    first = api.post("/runs", json=spec)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["type"] == "full" and body["schedule"]["interval_s"] == 2
    name = body["schedule"]["name"]

    def runs_at_lake() -> list[dict[str, Any]]:
        return [r for r in api.get("/runs").json() if r["destination"] == str(lake)]

    def a_complete_delta() -> dict[str, Any] | None:
        done = [r for r in runs_at_lake() if r["type"] == "delta" and r["status"] == "complete"]
        return done[0] if done else None

    delta = wait_for(a_complete_delta, 240, "a complete delta run of the feed")
    runs = runs_at_lake()
    assert runs[-1]["etl_id"] == body["etl_id"] and runs[-1]["status"] == "complete"
    assert delta["etl_id"] > body["etl_id"]
    assert not [r for r in runs if r["status"] == "failed"], runs

    with client_for(kafka, local_stack, roots(tmp_path_factory)) as again:  # a restart
        feeds = {s["name"]: s for s in again.get("/schedules").json()}
        assert feeds[name]["spec"]["destination"] == str(lake)
        assert feeds[name]["last_etl_id"] is not None and feeds[name]["last_error"] is None


def test_openapi_lists_the_datapipeline_paths(kafka: KafkaSettings, local_stack: Stack) -> None:
    anonymous = TestClient(client_for(kafka, local_stack).app)
    doc = anonymous.get("/openapi.json").json()  # no token needed
    assert {
        f"{DP}/export", f"{DP}/config/optout", f"{DP}/config/schedule",
        f"{DP}/config/export-path", f"{DP}/config/tenants", "/runs", "/runs/{etl_id}",
    } <= set(doc["paths"])  # fmt: skip
    assert set(doc["paths"][f"{DP}/export"]) == {"get", "post", "delete"}
