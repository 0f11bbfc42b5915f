"""What a token holder cannot do through the control API: write outside the allowed roots,
send an unbounded body, open a WebSocket without the token; and what the server refuses at
start: a weak or padded token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fastapi import WebSocket
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.websockets import WebSocketDisconnect

from sluiceway.api.app import Services, create_app
from sluiceway.api.auth import TOKEN_ENV, load_api_settings
from sluiceway.api.config_store import MemoryStore
from sluiceway.api.destinations import DestinationNotAllowedError, parse_roots
from sluiceway.api.dp_jobs import default_export_path
from sluiceway.api.scheduler import Scheduler
from sluiceway.api.schedules import feed_of
from sluiceway.common.errors import ConfigError
from sluiceway.common.settings import KafkaSettings, S3Settings, StackSettings
from sluiceway.common.spec import parse_spec

TOKEN = "guards-test-token-0123456789abcdef"
DP = "/rest/datapipeline/latest"
KAFKA, S3 = KafkaSettings(port=1, topic_prefix="unit.sw."), S3Settings(port=1, bucket="lake")


def no_start(*_: Any, **__: Any) -> Any:
    raise AssertionError("a unit test must not start runs")


def build(roots: tuple[str, ...], max_body_bytes: int = 1_000_000) -> Services:
    config = MemoryStore({"tenants": ["t1"]})
    scheduler = Scheduler(
        KAFKA, S3, MemoryStore(), config, starter=no_start, chain_exists=lambda _: False,
        probe=lambda: None,
    )  # fmt: skip
    return Services(KAFKA, S3, SecretStr(TOKEN), config, scheduler, roots, max_body_bytes)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(build((str(root), "s3://lake/exports")))) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield test_client


# -- allowed roots --------------------------------------------------------------------------


def refused(response: Any, given: str) -> str:
    assert response.status_code == 403, response.text
    error: str = response.json()["error"]
    assert error.startswith(f"destination {given!r} is not allowed")
    return error.replace(repr(given), "<path>")


def test_the_export_path_stays_under_the_roots(client: TestClient, root: Path) -> None:
    outside = root.parent / "outside"
    (root.parent / "existing").mkdir()
    messages = {
        refused(client.put(f"{DP}/config/export-path", json={"path": path}), path)
        for path in (str(outside / "new" / "deep"), str(root.parent / "existing"), "/etc")
    }
    assert len(messages) == 1  # the same answer whether the path exists or not
    assert not outside.exists()  # and no directory tree was made
    assert client.get(f"{DP}/config/export-path").json() == {"path": default_export_path()}
    inside = str(root / "exports")
    assert client.put(f"{DP}/config/export-path", json={"path": inside}).status_code == 200


def test_a_symlink_inside_a_root_pointing_out_is_outside(client: TestClient, root: Path) -> None:
    target = root.parent / "elsewhere"
    target.mkdir()
    (root / "link").symlink_to(target)
    given = str(root / "link" / "lake")
    refused(client.put(f"{DP}/config/export-path", json={"path": given}), given)
    assert not (target / "lake").exists()
    spec = {"tenants": ["t1"], "destination": given}
    refused(client.post("/runs", json=spec), given)


@pytest.mark.parametrize(
    "destination", ["/tmp/anywhere", "s3://other-bucket/x", "s3://lake/exportsX", "s3://lake"]
)
def test_runs_stay_under_the_roots(client: TestClient, destination: str) -> None:
    spec = {"tenants": ["t1"], "destination": destination}
    refused(client.post("/runs", json=spec), destination)
    refused(client.post("/runs", json={**spec, "type": "continuous", "interval": 60}), destination)


def test_runs_under_a_root_start_with_the_resolved_destination(
    client: TestClient, root: Path
) -> None:
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real")
    started: list[str] = []

    def record(spec: Any, *_: Any, **__: Any) -> Any:
        started.append(spec.destination)
        raise ConfigError("stub: recorded")

    with mock.patch("sluiceway.api.runs.start_run", record):
        for destination in (str(root / "alias" / "lake"), "s3://lake/exports/team-a"):
            response = client.post("/runs", json={"tenants": ["t1"], "destination": destination})
            assert response.json()["error"] == "stub: recorded"
    assert started == [str(root / "real" / "lake"), "s3://lake/exports/team-a"]


def test_a_stored_export_path_outside_the_roots_is_refused_at_export(
    client: TestClient, root: Path
) -> None:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    services.config.put("export-path", "/srv/elsewhere")  # set before the roots were narrowed
    with mock.patch("sluiceway.api.datapipeline.start_run", no_start):
        refused(client.post(f"{DP}/export"), "/srv/elsewhere")
    schedule = {"fromDate": "2026-01-01", "repeatDays": ["MONDAY"], "startTime": "02:00"}
    refused(client.put(f"{DP}/config/schedule", json=schedule), "/srv/elsewhere")


def test_scheduled_runs_are_checked_too(root: Path) -> None:
    services = Services.build(KAFKA, S3, SecretStr(TOKEN), roots=f" {root} , s3://lake/x ")
    assert services.roots == (str(root), "s3://lake/x")
    outside = root.parent / "feed-lake"
    spec = parse_spec({"tenants": ["t1"], "destination": str(outside), "type": "continuous",
                       "interval": 60})  # fmt: skip
    feed = feed_of(spec, datetime.now(UTC))  # stored when the roots were wider
    for mode in ("delta", "full"):
        with pytest.raises(DestinationNotAllowedError):
            services.scheduler.run_now(replace(feed, mode=mode))
    assert not outside.exists()


def test_default_roots_are_the_home_lake_data_pipeline_and_the_bucket() -> None:
    home = StackSettings().home
    assert parse_roots("", S3) == (str(home / "lake"), str(home / "data-pipeline"), "s3://lake")
    with pytest.raises(ConfigError, match="relative"):
        parse_roots("lake", S3)


# -- body size, WebSockets, the token ---------------------------------------------------------


def test_bodies_over_the_limit_get_413(root: Path) -> None:
    app = create_app(build((str(root),), max_body_bytes=2_000))
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TOKEN}"
        big = {"tenants": ["t" * 3_000], "destination": str(root)}
        response = test_client.post("/runs", json=big)
        assert response.status_code == 413
        assert "SLUICEWAY_API_MAX_BODY_BYTES" in response.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
            yield b'{"tenants": ["'
            yield b"t" * 3_000
            yield b'"]}'

        headers = {"Content-Type": "application/json"}
        assert test_client.post("/runs", content=chunks(), headers=headers).status_code == 413
        small = {"tenants": ["t1"], "destination": "relative"}
        assert test_client.post("/runs", json=small).status_code == 403


def test_websockets_need_the_token(root: Path) -> None:
    app = create_app(build((str(root),)))

    @app.websocket("/ws-probe")
    async def probe(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("inside")
        await socket.close()

    anonymous = TestClient(app)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with (
            pytest.raises(WebSocketDisconnect),
            anonymous.websocket_connect("/ws-probe", headers=headers) as socket,
        ):
            socket.receive_text()
    with anonymous.websocket_connect(
        "/ws-probe", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as socket:
        assert socket.receive_text() == "inside"


def test_the_token_setting_is_stripped_and_must_be_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, f"  {TOKEN}\n")
    settings = load_api_settings()
    assert settings.token.get_secret_value() == TOKEN
    app = create_app(replace(build(()), token=settings.token))
    with TestClient(app) as started:
        answer = started.get("/schedules", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
    for weak in ("x" * 31, "   ", "short-token"):
        monkeypatch.setenv(TOKEN_ENV, weak)
        with pytest.raises(ConfigError) as caught:
            load_api_settings()
        assert str(caught.value).startswith("bad setting SLUICEWAY_API_TOKEN: ")
        assert weak.strip() not in str(caught.value) or not weak.strip()
    monkeypatch.setenv(TOKEN_ENV, "y" * 32)
    assert load_api_settings().token.get_secret_value() == "y" * 32
