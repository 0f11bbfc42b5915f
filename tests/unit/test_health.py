"""The shared health server: real HTTP on a free loopback port, a fake clock for liveness."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from sluiceway.common.health import Health, HealthSettings, serve
from sluiceway.common.settings import settings_problem


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def served() -> Iterator[tuple[Health, Clock, int]]:
    clock = Clock()
    health = Health(clock)
    server = serve(0, HealthSettings(live_window_s=10), health)
    assert server is not None
    yield health, clock, server.server_port
    server.shutdown()
    server.server_close()


def test_liveness_follows_the_main_loops_beats(served: tuple[Health, Clock, int]) -> None:
    health, clock, port = served
    status, kind, body = _get(port, "/healthz")
    assert (status, kind) == (200, "application/json")
    assert json.loads(body)["status"] == "ok"
    clock.now += 10.5
    status, _, body = _get(port, "/healthz")
    found: dict[str, Any] = json.loads(body)
    assert status == 503
    assert found == {"status": "stalled", "silent_s": 10.5, "window_s": 10.0}
    health.beat()
    assert _get(port, "/healthz")[0] == 200


def test_readiness_is_what_the_worker_says(served: tuple[Health, Clock, int]) -> None:
    health, _, port = served
    status, _, body = _get(port, "/readyz")
    assert status == 503
    assert json.loads(body) == {"status": "not ready", "reason": "starting"}
    health.ready(True, "streaming")
    status, _, body = _get(port, "/readyz")
    assert status == 200
    assert json.loads(body) == {"status": "ready", "reason": "streaming"}


def test_metrics_is_the_prometheus_exposition(served: tuple[Health, Clock, int]) -> None:
    import sluiceway.producers.metrics  # noqa: F401  (registers the capture's metrics)

    status, kind, body = _get(served[2], "/metrics")
    assert status == 200
    assert kind.startswith("text/plain")
    assert "# TYPE sluiceway_capture_events_total counter" in body


def test_no_port_serves_nothing() -> None:
    assert serve(None) is None


def test_bad_setting_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEWAY_HEALTH_LIVE_WINDOW_S", "soon")
    with pytest.raises(ValidationError) as caught:
        HealthSettings()
    assert settings_problem(caught.value) == (
        "bad setting SLUICEWAY_HEALTH_LIVE_WINDOW_S='soon': "
        "Input should be a valid number, unable to parse string as a number"
    )


def test_other_validation_errors_are_not_settings_problems() -> None:
    class Shape(BaseModel):
        size: int

    with pytest.raises(ValidationError) as caught:
        Shape(size="big")  # type: ignore[arg-type]
    assert settings_problem(caught.value) is None
