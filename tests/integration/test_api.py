"""The control API against the real stack: /runs and continuous feeds (the Data pipeline
endpoints are in test_datapipeline_api.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sluiceway.api.app import Services, create_app
from sluiceway.common.settings import KafkaSettings
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
