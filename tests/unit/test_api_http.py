"""The control API's HTTP surface without a stack: auth, validation, config endpoints."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.routing import BaseRoute

from sluiceway import __version__
from sluiceway.api.app import PUBLIC_PATHS, Services, create_app
from sluiceway.api.auth import TOKEN_ENV, load_api_settings, token_matches
from sluiceway.api.config_store import MemoryStore
from sluiceway.api.scheduler import Scheduler
from sluiceway.common.errors import ConfigError
from sluiceway.common.runs import RunRecord
from sluiceway.common.settings import KafkaSettings, S3Settings
from sluiceway.common.spec import RunSpec
from sluiceway.control.runner import Workers

TOKEN = "unit-test-token-7f3a"
DP = "/rest/datapipeline/latest"


def fake_services() -> Services:
    # Port 1: anything that reaches for Kafka fails instead of touching a real broker.
    kafka, s3 = KafkaSettings(port=1, topic_prefix="unit.sw."), S3Settings(port=1)
    config = MemoryStore()

    def no_start(spec: RunSpec) -> tuple[RunRecord, Workers | None]:
        raise AssertionError("a unit test must not start runs")

    scheduler = Scheduler(
        kafka, s3, MemoryStore(), config, starter=no_start, chain_exists=lambda _: False,
        probe=lambda: None,
    )  # fmt: skip
    return Services(kafka, s3, SecretStr(TOKEN), config, scheduler, roots=("/tmp",))


APP: FastAPI = create_app(fake_services())


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(fake_services())) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client


def _concrete(path: str) -> str:
    return re.sub(r"\{etl_id\}", "20261122T010203Z-abcd", re.sub(r"\{name\}", "x", path))


def api_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute with its full path; newer FastAPI keeps an included router (and the
    prefix it was included with) as one entry of app.routes."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from api_routes(included.routes, prefix + getattr(context, "prefix", ""))


PROTECTED = sorted(
    (method, _concrete(path))
    for path, route in api_routes(APP.routes)
    if path not in PUBLIC_PATHS
    for method in route.methods or ()
)


def test_route_table_covers_the_api() -> None:
    paths = {path for _, path in PROTECTED}
    assert {f"{DP}/export", f"{DP}/config/optout", f"{DP}/config/schedule", "/runs"} <= paths
    assert {f"{DP}/config/export-path", f"{DP}/config/tenants", "/schedules"} <= paths
    assert len(PROTECTED) == 42  # 18 Data pipeline routes under each of two prefixes


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer "])
def test_protected_routes_need_the_token(method: str, path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    with TestClient(APP) as anonymous:
        response = anonymous.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    error = response.json()["error"]
    assert "bearer token" in error and "wrong-token" not in error and TOKEN not in error


def test_unknown_paths_need_the_token_too() -> None:
    assert TestClient(APP).get("/nope").status_code == 401


def test_healthz_and_openapi_are_public() -> None:
    anonymous = TestClient(APP)
    health = anonymous.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": __version__}
    doc = anonymous.get("/openapi.json").json()
    assert doc["info"] == {
        "title": "Sluiceway control API",
        "version": __version__,
        "description": doc["info"]["description"],
    }
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert f"{DP}/export" in doc["paths"] and "/runs/{etl_id}" in doc["paths"]
    assert doc["paths"][f"{DP}/export"]["post"]["security"] == [{"bearer": []}]
    assert anonymous.get("/docs").status_code == 200


def test_probes_and_scrape_are_public() -> None:
    # outside the lifespan the scheduler has not started: not ready, yet alive
    anonymous = TestClient(create_app(fake_services()))
    assert anonymous.get("/healthz").status_code == 200
    response = anonymous.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "reason": "the scheduler is not running"}
    with TestClient(create_app(fake_services())) as running:
        assert running.get("/readyz").json() == {"status": "ready"}
        scrape = running.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    assert "# TYPE process_cpu_seconds_total counter" in scrape.text


def test_token_comparison() -> None:
    secret = SecretStr("abc")
    assert token_matches(b"Bearer abc", secret)
    assert token_matches(b"bearer  abc ", secret)
    assert not token_matches(b"Bearer abcd", secret)
    assert not token_matches(b"Token abc", secret)
    assert not token_matches(None, secret)


def test_missing_token_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ConfigError) as caught:
        load_api_settings()
    assert str(caught.value) == (
        "SLUICEWAY_API_TOKEN is not set; the control API needs a bearer token"
    )
    monkeypatch.setenv(TOKEN_ENV, "s3cret" * 6)
    assert load_api_settings().token.get_secret_value() == "s3cret" * 6


def test_spec_errors_are_422_with_problems(client: TestClient) -> None:
    response = client.post("/runs", json={"tenants": [], "format": "xml", "bogus": 1})
    assert response.status_code == 422
    body = response.json()
    fields = {p["field"] for p in body["problems"]}
    assert {"tenants", "format", "destination", "bogus"} <= fields
    assert "\n" not in body["error"] and "tenants" in body["error"]


def test_spec_body_must_be_an_object(client: TestClient) -> None:
    response = client.post("/runs", json=["tenant-001"])
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == ""


def test_continuous_hash_feed_needs_the_server_secret(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLUICEWAY_PII_SECRET", raising=False)
    spec = {
        "tenants": ["t1"], "destination": "/tmp/lake", "type": "continuous", "interval": 5,
        "pii": {"user.email_address": "hash"}, "pii_secret": "k",
    }  # fmt: skip
    response = client.post("/runs", json=spec)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "pii_secret"
    assert "SLUICEWAY_PII_SECRET" in response.json()["error"]


@pytest.mark.parametrize("etl_id", ["latest", "20261122T010203Z-ABCD", "20261122T010203Z-abc"])
def test_malformed_etl_id_is_400(client: TestClient, etl_id: str) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/runs/{etl_id}")
        assert response.status_code == 400
        assert etl_id in response.json()["error"]


def test_launch_false_cannot_go_with_continuous(client: TestClient) -> None:
    spec = {"tenants": ["t1"], "destination": "/tmp/x", "type": "continuous", "interval": 5}
    response = client.post("/runs", params={"launch": "false"}, json=spec)
    assert response.status_code == 400
